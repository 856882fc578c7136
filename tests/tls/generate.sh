#!/bin/sh
# Regenerates the test PKI of the https:// image tests. The files are checked in, valid from
# 2000 to 2126, so the tests need neither openssl nor a certificate-generating crate, and a
# machine clock that is off by years does not matter. Run from this directory.
#   ca.pem          the test CA, given to the driver as image_ca_file
#   localhost.pem   127.0.0.1, ::1 and localhost, signed by the CA
#   other-host.pem  images.example.org only, signed by the CA: a hostname mismatch on 127.0.0.1
#   expired.pem     like localhost.pem, but valid in 2000 only
#   server.key      the key of both server certificates; the CA's key is not kept
set -eu
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
: >"$tmp/index.txt"
echo 01 >"$tmp/serial"
cat >"$tmp/ca.cnf" <<CNF
[ca]
default_ca = test
[test]
database = $tmp/index.txt
new_certs_dir = $tmp
serial = $tmp/serial
default_md = sha256
policy = any
unique_subject = no
[any]
commonName = supplied
CNF
sign() { # csr out extfile issuer-options [end date]
    openssl ca -batch -notext -config "$tmp/ca.cnf" -keyfile "$tmp/ca.key" \
        -startdate 20000101000000Z -enddate "${5:-21260101000000Z}" \
        -in "$1" -out "$2" -extfile "$3" $4
}
openssl ecparam -name prime256v1 -genkey -noout -out "$tmp/ca.key"
openssl req -new -key "$tmp/ca.key" -subj "/CN=nomad-pot-driver test CA" -out "$tmp/ca.csr"
printf '%s\n' "basicConstraints=critical,CA:TRUE" "keyUsage=critical,keyCertSign,cRLSign" \
    "subjectKeyIdentifier=hash" >"$tmp/ca.ext"
sign "$tmp/ca.csr" ca.pem "$tmp/ca.ext" "-selfsign"
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out server.key
leaf() { # name common-name subjectAltName [end date]
    openssl req -new -key server.key -subj "/CN=$2" -out "$tmp/$1.csr"
    printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature" \
        "extendedKeyUsage=serverAuth" "authorityKeyIdentifier=keyid" "subjectAltName=$3" \
        >"$tmp/$1.ext"
    sign "$tmp/$1.csr" "$1.pem" "$tmp/$1.ext" "-cert ca.pem" "${4:-}"
}
leaf localhost localhost "IP:127.0.0.1,IP:::1,DNS:localhost"
leaf other-host images.example.org "DNS:images.example.org"
leaf expired localhost "IP:127.0.0.1,IP:::1,DNS:localhost" 20010101000000Z
