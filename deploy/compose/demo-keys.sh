#!/bin/sh
# Generates the compose demo's key material on first start, into three volumes, so
# that no key is ever committed. Idempotent: existing keys are kept, so restarts keep
# host keys and signatures stable. Remove the volumes (docker compose down -v) to
# start over.
#
#   $GATEWAY (gateway only, uid 65532): signing.key (Ed25519, PKCS#8: signs session
#     ends), tls.crt + tls.key (the Postgres listener), ssh_host_ed25519_key (the
#     SSH listener), target_ed25519 (the gateway's login on demo-sshd), known_hosts
#     (demo-sshd's host key, so the gateway verifies its target)
#   $PROCESSOR (processors only, uid 65532): signing.key (Ed25519, PKCS#8: signs
#     masked frames)
#   $SSHD (demo-sshd only): ssh_host_ed25519_key
#   $PUBLIC (readable by all): authorized_keys (for demo-sshd), gateway-signing.pub
#     (trusted by the processors and the query API), processor-signing.pub (trusted
#     by the query API), gateway-tls.crt (for sslrootcert)
set -eu
GATEWAY=${GATEWAY:-/keys/gateway}
SSHD=${SSHD:-/keys/sshd}
PUBLIC=${PUBLIC:-/keys/public}
PROCESSOR=${PROCESSOR:-/keys/processor}
GATEWAY_UID=${GATEWAY_UID:-65532}
umask 077

if [ ! -f "$SSHD/ssh_host_ed25519_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C demo-sshd -f "$SSHD/ssh_host_ed25519_key"
fi
if [ ! -f "$GATEWAY/target_ed25519" ]; then
  ssh-keygen -q -t ed25519 -N '' -C tapline-gateway -f "$GATEWAY/target_ed25519"
fi
if [ ! -f "$GATEWAY/ssh_host_ed25519_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C tapline-gateway-host -f "$GATEWAY/ssh_host_ed25519_key"
fi
if [ ! -f "$GATEWAY/signing.key" ]; then
  openssl genpkey -algorithm ed25519 -out "$GATEWAY/signing.key"
fi
if [ ! -f "$PROCESSOR/signing.key" ]; then
  openssl genpkey -algorithm ed25519 -out "$PROCESSOR/signing.key"
fi
if [ ! -f "$GATEWAY/tls.key" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj /CN=tapline-gateway -addext subjectAltName=DNS:localhost,DNS:gateway,IP:127.0.0.1 \
    -keyout "$GATEWAY/tls.key" -out "$GATEWAY/tls.crt" 2>/dev/null
fi

# Derived files are rewritten every time: they follow the keys above.
printf 'demo-sshd %s\n' "$(cut -d' ' -f1,2 "$SSHD/ssh_host_ed25519_key.pub")" >"$GATEWAY/known_hosts"
cp "$GATEWAY/target_ed25519.pub" "$PUBLIC/authorized_keys"
openssl pkey -in "$GATEWAY/signing.key" -pubout -out "$PUBLIC/gateway-signing.pub"
openssl pkey -in "$PROCESSOR/signing.key" -pubout -out "$PUBLIC/processor-signing.pub"
cp "$GATEWAY/tls.crt" "$PUBLIC/gateway-tls.crt"

chown -R "$GATEWAY_UID:$GATEWAY_UID" "$GATEWAY"
chmod 0600 "$GATEWAY"/*
chown -R "$GATEWAY_UID:$GATEWAY_UID" "$PROCESSOR"
chmod 0600 "$PROCESSOR"/*
chmod 0755 "$PUBLIC"
chmod 0644 "$PUBLIC"/*
echo "demo keys ready; the gateway's signing key is $(openssl pkey -pubin -in "$PUBLIC/gateway-signing.pub" -outform DER | tail -c 32 | od -An -tx1 | tr -d ' \n')"
