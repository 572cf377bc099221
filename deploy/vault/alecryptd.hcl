# alecryptd: read and list the key records, nothing else. It never writes to
# Vault and cannot read anything outside the key path. (Renewing and looking
# up its own token come from Vault's default policy.)
path "secret/data/alecrypt/keys/*" {
  capabilities = ["read"]
}

path "secret/metadata/alecrypt/keys" {
  capabilities = ["list"]
}

path "secret/metadata/alecrypt/keys/*" {
  capabilities = ["list"]
}
