#!/bin/sh
# One-shot MinIO setup for the compose nodes, run with the MinIO client image: creates
# the archive bucket and the nodes' own MinIO user (from s3-credentials, made by
# gen-secrets.sh), whose policy reaches that bucket and nothing else. Re-running it is
# harmless. It uses only shell built-ins besides mc and cat.
#
#   SHARDSNAP_SECRETS_DIR        s3-credentials (default /secrets)
#   SHARDSNAP_MINIO_SECRETS_DIR  root-user, root-password (default /minio-secrets)
#   SHARDSNAP_BUCKET             the archive bucket (default snapshots)
#   MINIO_URL                    default http://minio:9000
set -eu

SECRETS_DIR=${SHARDSNAP_SECRETS_DIR:-/secrets}
MINIO_DIR=${SHARDSNAP_MINIO_SECRETS_DIR:-/minio-secrets}
BUCKET=${SHARDSNAP_BUCKET:-snapshots}
MINIO_URL=${MINIO_URL:-http://minio:9000}
POLICY=shardsnap-archives

die() {
  printf 'init-minio: %s\n' "$*" >&2
  exit 1
}

# first_line FILE: the file's first line.
first_line() {
  line=
  IFS= read -r line <"$1" || [ -n "$line" ] || die "$1 is empty"
  printf '%s' "$line"
}

case $BUCKET in '' | *[!a-z0-9.-]*) die "\"$BUCKET\" is not a bucket name" ;; esac
case $MINIO_URL in http://* | https://*) ;; *) die "MINIO_URL must be http:// or https://" ;; esac

root_user=$(first_line "$MINIO_DIR/root-user")
root_password=$(first_line "$MINIO_DIR/root-password")

access_key=
secret_key=
while IFS=' =' read -r key value; do
  case $key in
    aws_access_key_id) access_key=$value ;;
    aws_secret_access_key) secret_key=$value ;;
  esac
done <"$SECRETS_DIR/s3-credentials"
[ -n "$access_key" ] && [ -n "$secret_key" ] || die "no key pair in $SECRETS_DIR/s3-credentials"
[ "$access_key" != "$root_user" ] || die 'the nodes must not use the MinIO root user'

# The root credentials reach mc through its environment, not its arguments.
MC_HOST_local="${MINIO_URL%%://*}://$root_user:$root_password@${MINIO_URL#*://}"
export MC_HOST_local

mc mb --ignore-existing "local/$BUCKET"

policy_file=${TMPDIR:-/tmp}/$POLICY.json
cat >"$policy_file" <<JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::$BUCKET"]
    },
    {
      "Effect": "Allow",
      "Action": [
        "s3:GetObject",
        "s3:PutObject",
        "s3:DeleteObject",
        "s3:AbortMultipartUpload",
        "s3:ListMultipartUploadParts"
      ],
      "Resource": ["arn:aws:s3:::$BUCKET/*"]
    }
  ]
}
JSON
mc admin policy create local "$POLICY" "$policy_file"
mc admin user add local "$access_key" "$secret_key"
# Attaching a policy that is already attached fails with older servers: check instead.
if ! mc admin policy attach local "$POLICY" --user "$access_key"; then
  info=$(mc admin user info local "$access_key")
  case $info in *"$POLICY"*) ;; *) die "could not attach $POLICY to $access_key" ;; esac
fi
printf 'init-minio: bucket %s ready; user %s may use it and nothing else\n' "$BUCKET" "$access_key"
