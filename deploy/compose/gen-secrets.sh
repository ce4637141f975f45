#!/bin/sh
# One-shot secrets for the docker compose nodes; creates only what is missing.
#
# In SHARDSNAP_SECRETS_DIR (default /secrets, or the first argument), mounted read-only
# by the nodes:
#   ca.crt, ca.key          a CA (ca.key stays root-only: no node can read it)
#   NODE.crt, NODE.key      one per name in SHARDSNAP_NODES; SAN: the name, localhost,
#                           127.0.0.1 and SHARDSNAP_EXTRA_SANS; for serving and for
#                           dialing the other nodes (server and client use)
#   client.crt, client.key  a client certificate for the CLI (client.key root-only)
#   read.token, write.token, admin.token, peer.token
#                           random tokens; peer.token is what a node presents to the
#                           others (--peer-token-file) and has the admin role
#   tokens.json             the four tokens with their roles (--auth-tokens)
#   s3-credentials          the nodes' own MinIO user (AWS shared credentials file)
# In SHARDSNAP_MINIO_SECRETS_DIR (default SECRETS_DIR/minio, or the second argument),
# mounted by MinIO and its init job only:
#   root-user, root-password
#
# Keys, tokens and credentials are 0600, certificates 0644. Run as root, the files the
# nodes read belong to SHARDSNAP_NODE_UID:SHARDSNAP_NODE_GID (default 1000:1000, the
# image's `node` user) and the others to root; run as another user, everything stays
# that user's.
#
# Re-running changes nothing that is in order. It issues a certificate again when it
# is missing, no longer matches its key or the CA, expires within 30 days, or its SAN
# list changed (SHARDSNAP_EXTRA_SANS, e.g. DNS:shard1.example.com,IP:192.0.2.10).
# Tokens are never replaced: to issue new ones, remove tokens.json and the *.token files.
set -eu
umask 077

SECRETS_DIR=${1:-${SHARDSNAP_SECRETS_DIR:-/secrets}}
MINIO_DIR=${2:-${SHARDSNAP_MINIO_SECRETS_DIR:-$SECRETS_DIR/minio}}
NODES=${SHARDSNAP_NODES:-node-memory node-rocksdb}
EXTRA_SANS=${SHARDSNAP_EXTRA_SANS:-}
NODE_UID=${SHARDSNAP_NODE_UID:-1000}
NODE_GID=${SHARDSNAP_NODE_GID:-1000}
S3_USER=${SHARDSNAP_S3_USER:-shardsnap-node}
MINIO_ROOT_USER=${SHARDSNAP_MINIO_ROOT_USER:-shardsnap-root}
CA_DAYS=3650
CERT_DAYS=825
RENEW_SECONDS=2592000

say() { printf 'gen-secrets: %s\n' "$*"; }
die() {
  printf 'gen-secrets: %s\n' "$*" >&2
  exit 1
}

command -v openssl >/dev/null 2>&1 || die 'openssl is not installed'
case $NODE_UID$NODE_GID in *[!0-9]*) die 'SHARDSNAP_NODE_UID and SHARDSNAP_NODE_GID must be numeric' ;; esac
[ -n "$NODES" ] || die 'SHARDSNAP_NODES is empty'
for name in $NODES; do
  case $name in
    client | ca | read | write | admin | peer | tokens | *[!A-Za-z0-9._-]* | .*)
      die "\"$name\" cannot be a node name" ;;
  esac
done
case $EXTRA_SANS in *[!A-Za-z0-9.:,*-]*) die "SHARDSNAP_EXTRA_SANS: unexpected characters in \"$EXTRA_SANS\"" ;; esac
[ "$S3_USER" != "$MINIO_ROOT_USER" ] || die 'the nodes must not use the MinIO root user'

AS_ROOT=0
[ "$(id -u)" -eq 0 ] && AS_ROOT=1

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
trap 'exit 1' HUP INT TERM

# run CMD...: runs a command, showing its messages only when it fails.
run() {
  "$@" >"$WORK/out" 2>&1 || {
    cat "$WORK/out" >&2
    die "failed: $*"
  }
}

# own FILE MODE node|root: sets the mode, and the owner when running as root.
own() {
  chmod "$2" "$1"
  [ "$AS_ROOT" -eq 1 ] || return 0
  case $3 in
    node) chown "$NODE_UID:$NODE_GID" "$1" ;;
    root) chown 0:0 "$1" ;;
  esac
}

# put FILE MODE OWNER: writes standard input to FILE atomically.
put() {
  cat >"$1.tmp"
  own "$1.tmp" "$2" "$3"
  mv -f "$1.tmp" "$1"
}

# new_key FILE OWNER: a P-256 private key.
new_key() {
  run openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.tmp"
  own "$1.tmp" 0600 "$2"
  mv -f "$1.tmp" "$1"
}

# matches CERT KEY: whether the certificate is for this key.
matches() {
  [ "$(openssl x509 -in "$1" -noout -pubkey 2>/dev/null)" = "$(openssl pkey -in "$2" -pubout 2>/dev/null)" ]
}

# san_text SANS: the SAN list as openssl prints it.
san_text() {
  printf '%s' "$1" | sed 's/,/, /g; s/IP:/IP Address:/g'
}

# cert_ok CERT KEY SANS: valid, signed by the CA, for KEY, not expiring soon, same SANs.
cert_ok() {
  [ -s "$1" ] && [ -s "$2" ] || return 1
  openssl verify -CAfile "$SECRETS_DIR/ca.crt" "$1" >/dev/null 2>&1 || return 1
  openssl x509 -in "$1" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1 || return 1
  matches "$1" "$2" || return 1
  [ -z "$3" ] && return 0
  have=$(openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | sed -n '2s/^ *//p')
  [ "$have" = "$(san_text "$3")" ]
}

# issue NAME CN EXT_USAGE SANS KEY_OWNER: NAME.key if missing, NAME.crt signed by the CA.
issue() {
  crt=$SECRETS_DIR/$1.crt
  key=$SECRETS_DIR/$1.key
  [ -s "$key" ] || new_key "$key" "$5"
  if cert_ok "$crt" "$key" "$4"; then
    return 0
  fi
  {
    printf '[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = %s\n[ext]\n' "$2"
    printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n'
    printf 'extendedKeyUsage = %s\n' "$3"
    printf 'subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n'
    [ -z "$4" ] || printf 'subjectAltName = %s\n' "$4"
  } >"$WORK/$1.cnf"
  run openssl req -new -config "$WORK/$1.cnf" -key "$key" -out "$WORK/$1.csr"
  run openssl x509 -req -in "$WORK/$1.csr" -CA "$SECRETS_DIR/ca.crt" \
    -CAkey "$SECRETS_DIR/ca.key" -set_serial "0x$(openssl rand -hex 16)" -sha256 \
    -days "$CERT_DAYS" -extfile "$WORK/$1.cnf" -extensions ext -out "$crt.tmp"
  own "$crt.tmp" 0644 node
  mv -f "$crt.tmp" "$crt"
  say "issued $1.crt"
}

mkdir -p "$SECRETS_DIR" "$MINIO_DIR"
chmod 0750 "$SECRETS_DIR"
chmod 0700 "$MINIO_DIR"
if [ "$AS_ROOT" -eq 1 ]; then
  chown "0:$NODE_GID" "$SECRETS_DIR"
  chown 0:0 "$MINIO_DIR"
fi
rm -f "$SECRETS_DIR"/*.tmp "$MINIO_DIR"/*.tmp

# The CA. A new key means new certificates for everyone (they no longer verify).
ca_key=$SECRETS_DIR/ca.key
ca_crt=$SECRETS_DIR/ca.crt
if [ ! -s "$ca_key" ]; then
  new_key "$ca_key" root
  rm -f "$ca_crt"
fi
if ! { [ -s "$ca_crt" ] && matches "$ca_crt" "$ca_key" &&
  openssl x509 -in "$ca_crt" -noout -checkend "$RENEW_SECONDS" >/dev/null 2>&1; }; then
  printf '%s\n' '[req]' 'distinguished_name = dn' 'prompt = no' 'x509_extensions = ext' \
    '[dn]' 'CN = shardsnap compose CA' '[ext]' \
    'basicConstraints = critical, CA:TRUE, pathlen:0' 'keyUsage = critical, keyCertSign, cRLSign' \
    'subjectKeyIdentifier = hash' >"$WORK/ca.cnf"
  run openssl req -x509 -new -config "$WORK/ca.cnf" -key "$ca_key" -sha256 \
    -days "$CA_DAYS" -out "$ca_crt.tmp"
  own "$ca_crt.tmp" 0644 node
  mv -f "$ca_crt.tmp" "$ca_crt"
  say 'issued ca.crt'
fi
own "$ca_key" 0600 root
own "$ca_crt" 0644 node

for name in $NODES; do
  issue "$name" "$name" 'serverAuth, clientAuth' "DNS:$name,DNS:localhost,IP:127.0.0.1${EXTRA_SANS:+,$EXTRA_SANS}" node
  own "$SECRETS_DIR/$name.key" 0600 node
  own "$SECRETS_DIR/$name.crt" 0644 node
done
issue client shardsnap-client clientAuth '' root
own "$SECRETS_DIR/client.key" 0600 root
own "$SECRETS_DIR/client.crt" 0644 node

# Tokens: each NAME.token is kept once made; tokens.json is written from them once.
tokens_json=$SECRETS_DIR/tokens.json
for name in read write admin peer; do
  file=$SECRETS_DIR/$name.token
  if [ ! -s "$file" ]; then
    [ ! -e "$tokens_json" ] ||
      die "$name.token is missing but tokens.json exists: restore it, or remove tokens.json and the *.token files to issue new tokens"
    token=$(openssl rand -hex 32)
    printf '%s' "$token" | put "$file" 0600 node
    say "made $name.token"
  fi
  token=$(cat "$file")
  case $token in '' | *[!A-Za-z0-9._~+/=-]*) die "$name.token holds something that is not a token" ;; esac
  own "$file" 0600 node
done
if [ ! -e "$tokens_json" ]; then
  {
    printf '{\n  "tokens": [\n'
    for name in read write admin peer; do
      case $name in peer) role=admin sep='' ;; *) role=$name sep=, ;; esac
      printf '    { "name": "%s", "token": "%s", "role": "%s" }%s\n' \
        "$name" "$(cat "$SECRETS_DIR/$name.token")" "$role" "$sep"
    done
    printf '  ]\n}\n'
  } | put "$tokens_json" 0600 node
  say 'made tokens.json'
fi
own "$tokens_json" 0600 node

# MinIO: the root user (MinIO and its init job only) and the nodes' own user.
if [ ! -s "$MINIO_DIR/root-user" ]; then
  printf '%s' "$MINIO_ROOT_USER" | put "$MINIO_DIR/root-user" 0600 root
  say 'made the MinIO root user'
fi
if [ ! -s "$MINIO_DIR/root-password" ]; then
  password=$(openssl rand -hex 20)
  printf '%s' "$password" | put "$MINIO_DIR/root-password" 0600 root
  say 'made the MinIO root password'
fi
own "$MINIO_DIR/root-user" 0600 root
own "$MINIO_DIR/root-password" 0600 root
if [ ! -s "$SECRETS_DIR/s3-credentials" ]; then
  secret=$(openssl rand -hex 20)
  printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
    "$S3_USER" "$secret" | put "$SECRETS_DIR/s3-credentials" 0600 node
  say 'made s3-credentials'
fi
own "$SECRETS_DIR/s3-credentials" 0600 node

say "secrets ready in $SECRETS_DIR"
