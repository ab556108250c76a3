#!/bin/sh
# Generates the certificate fixtures once (committed; rerun only to replace them).
# Needs strongSwan's `pki` and openssl. Validity is pinned so that the test harness's
# fixed wall clock (2026-11-01) falls inside it.
set -eu
cd "$(dirname "$0")"
conf=$(mktemp)
trap 'rm -f "$conf"' EXIT
printf 'pki {\n  load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey\n}\n' >"$conf"
export STRONGSWAN_CONF="$conf"

FROM="2026-01-01 00:00:00"
TO="2046-01-01 00:00:00"
valid() { pki "$@" --dateform "%Y-%m-%d %T" --not-before "$FROM" --not-after "$TO" --outform pem; }

# ECDSA P-256: a CA and two end entities. Keys: CA and edge2 in SEC1, edge1 in PKCS#8.
pki --gen --type ecdsa --size 256 --outform pem >ecdsa-ca.key
valid --self --ca --in ecdsa-ca.key --type ecdsa --dn "C=CN, O=Local Cluster, CN=ECDSA Root CA" >ecdsa-ca.crt
pki --gen --type ecdsa --size 256 --outform pem >edge1.sec1.key
openssl pkcs8 -topk8 -nocrypt -in edge1.sec1.key -out edge1.key
rm edge1.sec1.key
valid --issue --in edge1.key --type priv --cacert ecdsa-ca.crt --cakey ecdsa-ca.key \
    --dn "C=CN, O=Local Cluster, CN=edge1" --san edge1 --san edge1@local.cluster --san 192.0.2.1 >edge1.crt
pki --gen --type ecdsa --size 256 --outform pem >edge2.key
valid --issue --in edge2.key --type priv --cacert ecdsa-ca.crt --cakey ecdsa-ca.key \
    --dn "CN=edge2" --san edge2 >edge2.crt

# RSA-3072: root -> intermediate -> end entity (PKCS#1 key); the end entity is signed
# with RSASSA-PSS.
pki --gen --type rsa --size 3072 --outform pem >rsa-ca.key
valid --self --ca --in rsa-ca.key --type rsa --dn "C=CN, O=Local Cluster, CN=RSA Root CA" >rsa-ca.crt
pki --gen --type rsa --size 3072 --outform pem >rsa-int.key
valid --issue --ca --in rsa-int.key --type priv --cacert rsa-ca.crt --cakey rsa-ca.key \
    --dn "C=CN, O=Local Cluster, CN=RSA Intermediate CA" >rsa-int.crt
pki --gen --type rsa --size 3072 --outform pem >cloud-connector.key
valid --issue --in cloud-connector.key --type priv --cacert rsa-int.crt --cakey rsa-int.key \
    --rsa-padding pss --dn "C=CN, O=Local Cluster, CN=cloud-connector" --san cloud-connector >cloud-connector.crt
openssl pkcs8 -topk8 -nocrypt -in cloud-connector.key -out cloud-connector.pkcs8.key

# ECDSA P-384 (PKCS#8 key) and P-521 (SEC1 key) end entities under the ECDSA CA, and an
# RSA-4096 end entity (PKCS#1) under the RSA intermediate.
pki --gen --type ecdsa --size 384 --outform pem >edge-p384.sec1.key
openssl pkcs8 -topk8 -nocrypt -in edge-p384.sec1.key -out edge-p384.key
rm edge-p384.sec1.key
valid --issue --in edge-p384.key --type priv --cacert ecdsa-ca.crt --cakey ecdsa-ca.key \
    --dn "C=CN, O=Local Cluster, CN=edge-p384" --san edge-p384 >edge-p384.crt
pki --gen --type ecdsa --size 521 --outform pem >edge-p521.key
valid --issue --in edge-p521.key --type priv --cacert ecdsa-ca.crt --cakey ecdsa-ca.key \
    --dn "C=CN, O=Local Cluster, CN=edge-p521" --san edge-p521 >edge-p521.crt
pki --gen --type rsa --size 4096 --outform pem >rsa4096.key
valid --issue --in rsa4096.key --type priv --cacert rsa-int.crt --cakey rsa-int.key \
    --dn "C=CN, O=Local Cluster, CN=rsa4096" --san rsa4096 >rsa4096.crt

# Expired (2020..2025) under the ECDSA CA.
pki --gen --type ecdsa --size 256 --outform pem >expired.key
pki --issue --in expired.key --type priv --cacert ecdsa-ca.crt --cakey ecdsa-ca.key \
    --dn "C=CN, O=Local Cluster, CN=expired" --san expired --dateform "%Y-%m-%d %T" \
    --not-before "2020-01-01 00:00:00" --not-after "2025-01-01 00:00:00" --outform pem >expired.crt

# An untrusted CA with the trusted CA's name, and a certificate from it for edge1.
pki --gen --type ecdsa --size 256 --outform pem >rogue-ca.key
valid --self --ca --in rogue-ca.key --type ecdsa --dn "C=CN, O=Local Cluster, CN=ECDSA Root CA" >rogue-ca.crt
pki --gen --type ecdsa --size 256 --outform pem >rogue.key
valid --issue --in rogue.key --type priv --cacert rogue-ca.crt --cakey rogue-ca.key \
    --dn "C=CN, O=Local Cluster, CN=edge1" --san edge1 >rogue.crt

# Issued by edge2, which is no CA (pki refuses that, openssl ca does not).
pki --gen --type ecdsa --size 256 --outform pem >under-ee.key
ca=$(mktemp -d)
trap 'rm -rf "$conf" "$ca"' EXIT
: >"$ca/index.txt"
echo 01 >"$ca/serial"
printf '[ca]\ndefault_ca=x\n[x]\ndatabase=%s/index.txt\nnew_certs_dir=%s\nserial=%s/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' \
    "$ca" "$ca" "$ca" >"$ca/ca.cnf"
openssl req -new -key under-ee.key -subj "/CN=under-ee" -out "$ca/req.csr"
openssl ca -batch -notext -config "$ca/ca.cnf" -cert edge2.crt -keyfile edge2.key \
    -startdate 20260101000000Z -enddate 20460101000000Z -in "$ca/req.csr" -out under-ee.crt 2>/dev/null
