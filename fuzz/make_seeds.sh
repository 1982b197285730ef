#!/usr/bin/env bash
# Regenerates the seed corpora in fuzz/corpus/ from schemas/examples/ (JSON)
# and the protobuf text below (binary, via `protoc --encode`). Seeds are
# committed; run this only after changing the examples or the schema.
# Usage: fuzz/make_seeds.sh
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
C="$ROOT/fuzz/corpus"
EX="$ROOT/schemas/examples"
PROTO_DIR="$ROOT/schemas"
PROTO=tally/v1/events.proto

encode() {  # encode <message> <textproto> <out>
  printf '%s' "$2" | protoc --proto_path="$PROTO_DIR" --encode="tally.v1.$1" "$PROTO" >"$3"
}
prefixed() {  # prefixed <selector byte, octal> <file...> : selector + payload on stdout
  local sel=$1; shift
  printf "\\$sel"; cat "$@"
}

rm -rf "$C"
mkdir -p "$C"/fuzz_decode_{click_json,conversion_json,click_protobuf,conversion_protobuf,outputs}

# ---- JSON inputs: the valid examples plus a few bad ones of each kind.
cp "$EX"/click*.json "$C/fuzz_decode_click_json/"
for f in malformed_payload__click_duplicate_key invalid_utf8__click_user_agent \
         wrong_type__click_sub_id_element field_too_long__click_six_sub_ids \
         invalid_value__click_bad_ip missing_field__click_null_ts; do
  cp "$EX/invalid/$f.json" "$C/fuzz_decode_click_json/"
done
cp "$EX"/conversion*.json "$C/fuzz_decode_conversion_json/"
for f in invalid_currency__conversion_lowercase wrong_type__conversion_amount_float \
         missing_field__conversion_no_click_id_no_user_id invalid_value__conversion_amount_over_1e15; do
  cp "$EX/invalid/$f.json" "$C/fuzz_decode_conversion_json/"
done

# ---- protobuf inputs.
CP="$C/fuzz_decode_click_protobuf"
encode Click 'click_id: "c-5573252a56606f93" ts: 1767225605948 affiliate_id: "aff-48"
  offer_id: "off-2" user_id: "u-186" ip: "65.3.72.22"
  user_agent: "Mozilla/5.0 (X11; Linux x86_64)" referrer: "https://blog.example/post"
  sub_ids: "summer" sub_ids: "banner2" country: "DE"' "$CP/click.pb"
encode Click 'click_id: "c-9f1e0b7d22c4a681" ts: 1767225611203 affiliate_id: "aff-7"
  offer_id: "off-11" user_id: "device:7c1e9a0e" ip: "2a02:8108:1140:5e00::1f"' "$CP/click_ipv6.pb"
encode Click 'click_id: "c-1" ts: 0 affiliate_id: "a" offer_id: "o" user_id: "u"
  ip: "10.0.0.1"' "$CP/bad_ts_zero.pb"
encode Click 'click_id: "c 1" ts: 1767225605948 affiliate_id: "a" offer_id: "o" user_id: "u"
  ip: "10.0.0.1" country: "de"' "$CP/bad_click_id_chars.pb"
printf '\x07\x01\x02\x03' >"$CP/garbage.pb"
head -c 20 "$CP/click.pb" >"$CP/truncated.pb"

VP="$C/fuzz_decode_conversion_protobuf"
encode Conversion 'conversion_id: "ord-9912" ts: 1767227405948 offer_id: "off-2"
  click_id: "c-5573252a56606f93" goal: "sale" amount: 4599 currency: "EUR"
  status: CONVERSION_STATUS_APPROVED' "$VP/conversion_click_id.pb"
encode Conversion 'conversion_id: "lead-42" ts: 1767229000000 offer_id: "off-11"
  user_id: "device:7c1e9a0e" goal: "lead" amount: 0 currency: "USD"
  status: CONVERSION_STATUS_PENDING' "$VP/conversion_user_id.pb"
encode Conversion 'conversion_id: "ord-9912" ts: 1767400205948 offer_id: "off-2"
  click_id: "c-5573252a56606f93" user_id: "u-186" goal: "sale" amount: 4599 currency: "JPY"
  status: CONVERSION_STATUS_REVERSED' "$VP/conversion_reversed.pb"
encode Conversion 'conversion_id: "ord-1" ts: 1767227405948 offer_id: "off-2"
  click_id: "c-1" goal: "sale" amount: -5 currency: "usd"
  status: CONVERSION_STATUS_UNSPECIFIED' "$VP/bad_amount_currency.pb"
encode Conversion 'conversion_id: "ord-1" offer_id: "off-2" click_id: "c-1" goal: "sale"
  currency: "EUR" status: CONVERSION_STATUS_APPROVED' "$VP/missing_ts_amount.pb"
printf '\x0a\xff\xff\xff\xff\x0f' >"$VP/garbage.pb"

# ---- outputs: selector byte + payload (see fuzz_decode_outputs.cc).
# JSON: \000 Commission, \002 Rejected, \004 Unattributed; protobuf: +1.
OP="$C/fuzz_decode_outputs"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
prefixed 000 "$EX/commission.json" >"$OP/commission_json"
prefixed 002 "$EX/rejected.json" >"$OP/rejected_json"
prefixed 002 "$EX/rejected_truncated.json" >"$OP/rejected_truncated_json"
prefixed 004 "$EX/unattributed.json" >"$OP/unattributed_json"
encode Commission 'commission_id: "cm-3f0c2a9be1d47a55" conversion_id: "ord-9912"
  offer_id: "off-2" goal: "sale" click_id: "c-5573252a56606f93" affiliate_id: "aff-48"
  sub_ids: "summer" click_ts: 1767225605948 conversion_ts: 1767227405948 amount: -2300
  currency: "EUR" status: CONVERSION_STATUS_REVERSED model: "linear" credit_ppm: 500000
  click_count: 2' "$tmp/commission.pb"
prefixed 001 "$tmp/commission.pb" >"$OP/commission_pb"
encode Rejected 'reason: "wrong_type" detail: "field '"'"'ts'"'"': expected an integer"
  source_topic: "clicks" source_partition: 3 source_offset: 1042 original_key: "c-1"
  original_value: "{\"ts\":\"1\"}\377" rejected_at: 1767225606120' "$tmp/rejected.pb"
prefixed 003 "$tmp/rejected.pb" >"$OP/rejected_pb"
encode Rejected 'reason: "payload_too_large" detail: "payload of 900000 bytes"
  source_topic: "clicks" source_partition: 5 source_offset: 77 original_key: "c-2"
  original_value: "{\"click_id\":\"c-2\",\"pad\":\"xx" rejected_at: 1767225607000
  original_key_size: 3
  original_key_sha256: "6260cd1bca682c8e6d53f7bd48085059c4f9bbab010abf0200ccfae2567a6dda"
  original_value_size: 900000
  original_value_sha256: "3343ea450e9b622170cf890dbdfd555b98a43872f383d05b14864e6f4fc2ecd4"
  original_value_truncated: true' "$tmp/rejected_truncated.pb"
prefixed 003 "$tmp/rejected_truncated.pb" >"$OP/rejected_truncated_pb"
encode Unattributed 'conversion { conversion_id: "ord-10077" ts: 1767231000000
  offer_id: "off-5" click_id: "c-00000000deadbeef" goal: "sale" amount: 12900
  currency: "JPY" status: CONVERSION_STATUS_APPROVED } reason: "click_not_found"
  detail: "no click"' "$tmp/unattributed.pb"
prefixed 005 "$tmp/unattributed.pb" >"$OP/unattributed_pb"
printf '\002{"reason":"nope"}' >"$OP/rejected_bad_reason_json"
printf '\001\x08\x80' >"$OP/truncated_varint_pb"

find "$C" -type f | sort | while read -r f; do printf '%6d %s\n' "$(stat -c %s "$f")" "${f#$ROOT/}"; done
