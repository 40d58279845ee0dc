"""HTTP routers, one concern each; they translate HTTP to domain calls and back, nothing more."""
