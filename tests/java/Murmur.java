// The Java client's default partition for keyed records, computed by Kafka's own code:
// Utils.toPositive(Utils.murmur2(keyBytes)) % numPartitions (BuiltInPartitioner.partitionForKey).
// Run in source-launch mode:  java -cp "<kafka libs>/*" Murmur.java <partitions> <key>...
// Prints one partition per key, one per line, in argument order.
import java.nio.charset.StandardCharsets;
import org.apache.kafka.common.utils.Utils;

public class Murmur {
    public static void main(String[] args) {
        int partitions = Integer.parseInt(args[0]);
        StringBuilder out = new StringBuilder();
        for (int i = 1; i < args.length; i++) {
            byte[] key = args[i].getBytes(StandardCharsets.UTF_8);
            out.append(Utils.toPositive(Utils.murmur2(key)) % partitions).append('\n');
        }
        System.out.print(out);
    }
}
