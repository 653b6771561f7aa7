#!/usr/bin/env bash
# Offboard every leaver in a CSV file with Ward, one `wardctl user offboard` per person.
#
#   deploy/examples/hr-offboard.sh leavers.csv
#
# leavers.csv: a header line, then `email,reason` (the reason may contain commas if quoted
# with double quotes; it is recorded with every wipe for the audit):
#
#   email,reason
#   alice@hospital.example,"Left 2026-11-30, HR ticket 4711"
#
# Credentials: an admin bundle with the `offboarding` role (wardctl admin issue hr-script
# --role offboarding --out hr.pem --passphrase-file hr.pass), passed in the environment with
# the file holding its passphrase (first line; not readable by every user):
#   WARD_SERVER=https://ward.hospital.example:7443 WARD_ADMIN_CERT=/etc/ward/hr.pem
#   WARD_ADMIN_PASSPHRASE_FILE=/etc/ward/hr.pass
#
# Each run is safe to repeat: Ward issues nothing twice. Every leaver is tried, and one line
# per leaver says what it came to ("done", "nothing to offboard" for someone with no devices
# and no tokens, or "FAILED" with wardctl's code: 1 a wipe failed, 4 permission denied, 5
# devices still offline). The script exits 0 when no leaver failed, else with the code of the
# first failure (4, permission denied, stops the batch at once: every other leaver would
# fail the same way). CSV files saved with Windows line endings (CRLF) are read as they are
# meant. Receipts (JSON) are kept in $RECEIPTS_DIR (default ./offboard-receipts).
set -euo pipefail

csv=${1:?usage: hr-offboard.sh leavers.csv}
timeout=${OFFBOARD_TIMEOUT:-5m}
receipts=${RECEIPTS_DIR:-./offboard-receipts}
wardctl=${WARDCTL:-wardctl}

command -v "$wardctl" >/dev/null || { echo "error: $wardctl not found on PATH" >&2; exit 2; }
command -v jq >/dev/null || { echo "error: jq is required" >&2; exit 2; }
[ -r "$csv" ] || { echo "error: cannot read $csv" >&2; exit 2; }
mkdir -p "$receipts"

done_count=0
nothing_count=0
failed_count=0
first_failure=0
line_no=0
while IFS= read -r line || [ -n "$line" ]; do
  line_no=$((line_no + 1))
  line=${line%$'\r'}                         # CRLF
  [ "$line_no" -eq 1 ] && continue          # header
  [ -z "${line//[[:space:]]/}" ] && continue  # blank
  email=${line%%,*}
  reason=${line#*,}
  reason=${reason#\"}; reason=${reason%\"}
  email=$(printf '%s' "$email" | tr -d '[:space:]')
  if [ -z "$email" ] || [ -z "$reason" ] || [ "$email" = "$line" ]; then
    echo "error: line $line_no of $csv: expected email,reason" >&2
    exit 2
  fi

  receipt="$receipts/$email.json"
  echo "offboarding $email ..." >&2
  set +e
  "$wardctl" user offboard "$email" --reason "$reason" --wait --timeout "$timeout" --output json >"$receipt"
  code=$?
  set -e
  case "$code" in
    0)
      devices=$(jq '.devices | length' "$receipt")
      echo "$email: done: $devices device(s) wiped with verified receipts and revoked; receipt in $receipt" >&2
      done_count=$((done_count + 1))
      ;;
    3)
      # No devices and no enrollment tokens: nothing to wipe, not a failure.
      rm -f "$receipt"
      echo "$email: nothing to offboard (no devices, no enrollment tokens)" >&2
      nothing_count=$((nothing_count + 1))
      ;;
    *)
      echo "$email: FAILED (line $line_no): wardctl exited $code" >&2
      if [ -s "$receipt" ]; then
        jq -r '.devices[] | "  \(.device_id) \(.hostname): wipe \(.wipe_state), receipt verified: \(.receipt_verified), revoked: \(.revoked)"' "$receipt" >&2 || true
      fi
      failed_count=$((failed_count + 1))
      [ "$first_failure" -eq 0 ] && first_failure=$code
      if [ "$code" -eq 4 ]; then
        echo "permission denied: stopping; check the admin bundle's role (offboarding)" >&2
        break
      fi
      ;;
  esac
done <"$csv"

echo "$done_count leaver(s) offboarded, $nothing_count with nothing to offboard, $failed_count failed" >&2
if [ "$failed_count" -gt 0 ]; then
  echo "rerun after fixing the cause (nothing is issued twice)" >&2
fi
exit "$first_failure"
