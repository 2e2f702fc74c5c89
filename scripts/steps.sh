# Sourced by the recipe and fine-tune scripts: `step NAME DONE_FILE COMMAND...` runs COMMAND unless DONE_FILE exists
# (so a rerun after an interruption continues where it stopped) and appends NAME and its wall time to
# "$STEPS_TIMES" (set by the caller, e.g. "$OUT/times.tsv"). UNTIL=NAME ends the script after step NAME (e.g. a
# study that needs only the recipe's data and stage-0 backbone: UNTIL=stage0).
step() {
  local name=$1 done_file=$2; shift 2
  if [[ -e "$done_file" ]]; then
    echo "== $name: done ($done_file)"
  else
    echo "== $name: $*"
    local t0=$SECONDS
    "$@"
    printf '%s\t%d\n' "$name" $((SECONDS - t0)) >> "$STEPS_TIMES"
  fi
  if [[ "${UNTIL:-}" == "$name" ]]; then echo "== stopping after $name (UNTIL)"; exit 0; fi
}
