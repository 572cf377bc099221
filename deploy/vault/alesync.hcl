# alesync: create and update key records (check-and-set writes), read them
# back and list them, on the key path only. No delete: keys the Portal stops
# listing are retired to decrypt-only, never removed.
path "secret/data/alecrypt/keys/*" {
  capabilities = ["create", "update", "read"]
}

path "secret/metadata/alecrypt/keys" {
  capabilities = ["list"]
}

path "secret/metadata/alecrypt/keys/*" {
  capabilities = ["list", "read"]
}
