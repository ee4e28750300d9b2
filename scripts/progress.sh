# Sourced by the build scripts: what a person sees while a build runs.
#
#   build_start NAME KEY   prints "NAME: building (key KEY; took 8m36s last time)" and,
#                          every 30 s until build_done, "NAME: building… 2m30s" (a
#                          spinner line on a terminal, a plain line in CI logs)
#   build_done NAME        prints "NAME: built in 8m41s" and remembers the time for
#                          the next build of NAME (~/.cache/v6lab/build-times/NAME)
_times=${XDG_CACHE_HOME:-$HOME/.cache}/v6lab/build-times
_human() { local s=$1; if [ "$s" -ge 60 ]; then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi; }
build_start() {
  local name=$1 key=$2 last=""
  [ -r "$_times/$name" ] && last="; took $(_human "$(cat "$_times/$name")") last time"
  echo "$name: building (key $key$last)"
  _build_started=$(date +%s)
  (
    trap 'exit 0' TERM
    while sleep 30; do
      el=$(_human $(( $(date +%s) - _build_started )))
      if [ -t 1 ]; then printf '\r\033[K  … %s: building %s' "$name" "$el"; else echo "$(date +%H:%M:%S)  $name: building… $el"; fi
    done
  ) &
  _build_ticker=$!
  trap 'kill $_build_ticker 2>/dev/null || true' EXIT
}
build_done() {
  local name=$1 took=$(( $(date +%s) - _build_started ))
  kill "$_build_ticker" 2>/dev/null || true
  wait "$_build_ticker" 2>/dev/null || true
  [ -t 1 ] && printf '\r\033[K'
  mkdir -p "$_times" && echo "$took" > "$_times/$name"
  echo "$name: built in $(_human "$took")"
}
