#!/usr/bin/env bash
# Coverage-guided fuzzing of rbm-edge's pure core (fuzz/, cargo-fuzz + libFuzzer).
#
#   make fuzz                     every target, 60 s each
#   make fuzz FUZZ_SECONDS=20     shorter
#   FUZZ_TARGETS="token status" bash scripts/fuzz.sh
#
# Installs the nightly toolchain and cargo-fuzz on first use (quiet when present). Each
# target starts from its committed seeds (fuzz/seeds/<target>, copied into fuzz/corpus/<target>,
# which keeps growing across runs) with its dictionary (fuzz/dicts/<target>.dict). Targets run
# one after another (never in parallel), each bounded by `timeout`. Prints executions,
# coverage (cov/ft) and crashes per target; exits non-zero if any target crashed or failed.
# Crash inputs land in fuzz/artifacts/<target>/; replay one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ALL_TARGETS="webhook event status validate service_key token pipeline api_bodies"
FUZZ_TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
say() { printf 'fuzz: %s\n' "$*"; }

# Largest input per target (bytes): a few times the biggest real document of its kind.
max_len() {
  case "$1" in
    webhook) echo 16384 ;;   # an envelope carries the event as base64 (4/3 of its size)
    event) echo 8192 ;;      # RBM events are a few hundred bytes
    status) echo 4096 ;;     # a sequence line and up to 32 records
    validate) echo 16384 ;;  # rich cards with many suggestions; 250 KB is checked by length alone
    service_key) echo 8192 ;; # a 2048-bit PKCS#8 PEM key file is about 2.4 KB
    token) echo 8192 ;;      # tokens are refused above 4096 bytes
    *) echo 4096 ;;
  esac
}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  say "installing the nightly toolchain (once)"
  rustup toolchain install nightly --profile minimal >/dev/null || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  say "installing cargo-fuzz (a few minutes, once)"
  cargo install --quiet --locked cargo-fuzz 2>/dev/null || cargo install --quiet cargo-fuzz || exit 1
fi

say "building the targets (nightly, AddressSanitizer, debug assertions)"
if ! cargo +nightly fuzz build --fuzz-dir fuzz >/dev/null 2>fuzz/build.log; then
  tail -n 40 fuzz/build.log >&2
  exit 1
fi
rm -f fuzz/build.log

failed=0
summary=()
for target in $FUZZ_TARGETS; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
  dict=()
  [ -f fuzz/dicts/"$target".dict ] && dict=(-dict=fuzz/dicts/"$target".dict)
  before=$(find "$artifacts" -type f | wc -l)
  log=$(mktemp)
  say "running $target for ${FUZZ_SECONDS}s"
  # libFuzzer stops itself after -max_total_time; `timeout` is the backstop (build is done,
  # so the margin only covers start-up, seed loading and a slow last input).
  timeout --kill-after=10 $((FUZZ_SECONDS + 60)) \
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$corpus" -- \
      -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$target")" -rss_limit_mb=2048 \
      -timeout=10 -print_final_stats=1 -artifact_prefix="$artifacts/" "${dict[@]}" >"$log" 2>&1
  rc=$?
  after=$(find "$artifacts" -type f | wc -l)
  crashes=$((after - before))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  # The last libFuzzer status line, e.g. "#123456  DONE  cov: 812 ft: 3409 corp: 301/40Kb ...".
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  line=$(printf '%-12s execs %10s  cov %6s  ft %7s  corpus %6s  crashes %s' \
    "$target" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes")
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    line="$line  FAILED (exit $rc)"
    # The panic message (cut to 400 columns) and where the input that caused it was written.
    { grep -m1 -A2 "panicked at" "$log"; grep -E "==[0-9]+==ERROR|SUMMARY:|Test unit written to" "$log"; } |
      cut -c1-400 | sed "s/^/  [$target] /" >&2
  fi
  summary+=("$line")
  rm -f "$log"
done

printf '\nfuzz summary (%ss per target)\n' "$FUZZ_SECONDS"
printf '  %s\n' "${summary[@]}"
if [ "$failed" -ne 0 ]; then
  printf 'fuzz: a target crashed or failed; inputs are in fuzz/artifacts/<target>/\n' >&2
  exit 1
fi
