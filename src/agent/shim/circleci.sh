#!/bin/sh
# Torus's in-job `circleci` / `circleci-agent` command (the "environment CLI" CircleCI injects into
# every job). One POSIX sh script: it needs only sh, awk, sort, find, tr, wc, mkdir — busybox is
# enough, no bash, no Node, no network. See src/agent/shim/README.md for the behaviour reproduced.
#
#   circleci tests glob PATTERN...
#   circleci tests split [--split-by=name|filesize|timings] [--timings-type=...] [--index=N]
#                        [--total=N] [--show-counts] [--time-default=DURATION] [--timings-file=F] [FILE]
#   circleci tests run --command=CMD [same flags as split] [--verbose]
#   circleci step halt        (alias: circleci task halt)
#   circleci env subst [TEXT]
#
# Timings are staged by the agent before the first step, one test case per line:
#   name<TAB>classname<TAB>file<TAB>seconds       (lines starting with # are comments)
# at $CIRCLE_INTERNAL_TEST_TIMINGS (default $HOME/.circleci-torus/timings.tsv).
# In a job of a "rerun failed tests" workflow the agent also stages the tests that failed in the
# job's previous run at $CIRCLE_INTERNAL_FAILED_TESTS (no default), one per line:
#   name<TAB>classname<TAB>file                    (and "# workflow ID", "# total N" lines)
# and `tests run` keeps only the input names that match one of them.

TORUS_SHIM_VERSION=1
NL='
'
TAB=$(printf '\t')

prog=${0##*/}
case "$prog" in circleci | circleci-agent) ;; *) prog=circleci ;; esac

die() {
  printf '%s: %s\n' "$prog" "$*" >&2
  exit 1
}

supported() {
  cat <<EOF
Torus supports these ${prog} commands inside a job:
  ${prog} tests glob PATTERN...
  ${prog} tests split [--split-by=name|filesize|timings] [--timings-type=filename|classname|testname|autodetect]
                      [--index=N] [--total=N] [--show-counts] [--time-default=DURATION] [--timings-file=FILE] [FILE]
  ${prog} tests run --command=CMD [--split-by=...] [--timings-type=...] [--index=N] [--total=N] [--verbose]
  ${prog} step halt   (alias: task halt)
  ${prog} env subst [TEXT]
EOF
}

unknown() {
  printf '%s: unknown command "%s" (this is the Torus in-job CLI).\n' "$prog" "$*" >&2
  supported >&2
  exit 1
}

timings_path() {
  if [ -n "${CIRCLE_INTERNAL_TEST_TIMINGS:-}" ]; then
    printf '%s' "$CIRCLE_INTERNAL_TEST_TIMINGS"
  else
    printf '%s' "${HOME:-/root}/.circleci-torus/timings.tsv"
  fi
}

halt_path() {
  if [ -n "${CIRCLE_INTERNAL_HALT_FILE:-}" ]; then
    printf '%s' "$CIRCLE_INTERNAL_HALT_FILE"
  else
    printf '%s' "${HOME:-/root}/.circleci-torus/halt"
  fi
}

# ---------------------------------------------------------------------------------------------
# tests glob

# Prints "BASE<TAB>MAXDEPTH<TAB>REGEX" for one glob pattern: the literal directory prefix to walk,
# how deep to walk (-1: unlimited) and the pattern as an anchored ERE over the printed path.
GLOB_AWK='
function esc(c) {
  if (c == "\\") return "\\\\"
  if (c == "^") return "\\^"
  if (index(".$|?*+()[]{}", c)) return "[" c "]"
  return c
}
function g2re(p,    re, i, n, c, j, cls, depth) {
  re = "^"; depth = 0; n = length(p)
  for (i = 1; i <= n; i++) {
    c = substr(p, i, 1)
    if (c == "*") {
      if (substr(p, i + 1, 1) == "*") {
        if (substr(p, i + 2, 1) == "/") { re = re "(.*/)?"; i += 2 }
        else { re = re ".*"; i++ }
      } else re = re "[^/]*"
    } else if (c == "?") re = re "[^/]"
    else if (c == "[") {
      j = index(substr(p, i + 2), "]")
      if (j == 0) { re = re esc(c); continue }
      cls = substr(p, i + 1, j)
      if (substr(cls, 1, 1) == "!") cls = "^" substr(cls, 2)
      if (substr(cls, 1, 1) == "^") re = re "[^/" substr(cls, 2) "]"
      else re = re "[" cls "]"
      i += j + 1
    } else if (c == "{") { re = re "("; depth++ }
    else if (c == "," && depth > 0) re = re "|"
    else if (c == "}" && depth > 0) { re = re ")"; depth-- }
    else if (c == "\\" && i < n) { i++; re = re esc(substr(p, i, 1)) }
    else re = re esc(c)
  }
  while (depth-- > 0) re = re ")"
  return re "$"
}
{
  p = $0
  while (substr(p, 1, 2) == "./") p = substr(p, 3)
  n = split(p, parts, "/")
  base = ""; k = 0
  for (i = 1; i <= n; i++) {
    if (parts[i] ~ /[*?[{\\]/) break
    base = (i == 1) ? parts[i] : base "/" parts[i]
    k = i
  }
  if (substr(p, 1, 1) == "/" && base == "") base = "/"
  if (base == "") base = "."
  depth = -1
  if (p !~ /\*\*/ && p !~ /[{]/) depth = n - k
  printf "%s\t%d\t%s\n", base, depth, g2re(p)
}'

tests_glob() {
  [ $# -gt 0 ] || die "tests glob: expected at least one PATTERN (e.g. circleci tests glob \"spec/**/*_spec.rb\")"
  for pattern in "$@"; do
    spec=$(printf '%s\n' "$pattern" | awk "$GLOB_AWK")
    base=${spec%%"$TAB"*}
    rest=${spec#*"$TAB"}
    depth=${rest%%"$TAB"*}
    re=${rest#*"$TAB"}
    [ -e "$base" ] || continue
    if [ "$depth" -ge 0 ]; then
      find "$base" -maxdepth "$depth" \( -type f -o -type l \) 2>/dev/null
    else
      find "$base" \( -type f -o -type l \) 2>/dev/null
    fi | RE="$re" awk '
      { p = $0; if (substr(p, 1, 2) == "./") p = substr(p, 3); if (p ~ ENVIRON["RE"]) print p }'
  done | LC_ALL=C sort -u
}

# ---------------------------------------------------------------------------------------------
# tests split / tests run

# Pass 1: one input name per line (sorted, unique) → "KEY<TAB>KNOWN<TAB>WEIGHT<TAB>NAME" where KEY
# sorts heaviest first and then by name; KNOWN=0 for names without a weight (no timing / no file).
# Messages go to stderr in CircleCI's words.
WEIGH_AWK='
function norm(s,    cut) {
  while (substr(s, 1, 2) == "./") s = substr(s, 3)
  # an absolute report path under the current or the job working directory: the longer prefix wins
  cut = 0
  if (pwd != "" && substr(s, 1, length(pwd) + 1) == pwd "/") cut = length(pwd) + 1
  if (wd != "" && length(wd) + 1 > cut && substr(s, 1, length(wd) + 1) == wd "/") cut = length(wd) + 1
  return substr(s, cut + 1)
}
function shq(s) { gsub(/\047/, "\047\\\047\047", s); return "\047" s "\047" }
BEGIN {
  FS = "\n"; pwd = ENVIRON["CWD"]; wd = ENVIRON["CIRCLE_WORKING_DIRECTORY"]
  if (substr(wd, 1, 1) == "~") wd = ENVIRON["HOME"] substr(wd, 2)
  sub(/\/+$/, "", pwd); sub(/\/+$/, "", wd)
  by = ENVIRON["SPLIT_BY"]; type = ENVIRON["TIMINGS_TYPE"]; tdef = ENVIRON["TIME_DEFAULT"]
  ntimings = 0
  if (by == "timings") {
    tf = ENVIRON["TIMINGS_FILE"]
    while ((getline line < tf) > 0) {
      if (line == "" || substr(line, 1, 1) == "#") continue
      nf = split(line, f, "\t")
      if (nf < 4) continue
      secs = f[4] + 0
      tname[f[1]] += secs; tclass[f[2]] += secs
      if (f[3] != "") tfile[norm(f[3])] += secs
      ntimings++
    }
    close(tf)
  }
}
{ names[++n] = $0 }
END {
  if (by == "timings") {
    if (type == "autodetect") {
      fm = 0; cm = 0
      for (i = 1; i <= n; i++) { if (norm(names[i]) in tfile) fm++; if (names[i] in tclass) cm++ }
      if (ntimings > 0 && fm > 0 && fm >= cm) { type = "filename"; print "Autodetected filename timings." > "/dev/stderr" }
      else if (ntimings > 0 && cm > 0) { type = "classname"; print "Autodetected classname timings." > "/dev/stderr" }
      else { by = "name"; print "Error auto-detecting timing type, falling back to weighting by name." > "/dev/stderr" }
    } else if (ntimings == 0) {
      by = "name"; print "Error auto-detecting timing type, falling back to weighting by name." > "/dev/stderr"
    }
  }
  for (i = 1; i <= n; i++) {
    name = names[i]; known = 0; w = 0
    if (by == "timings") {
      if (type == "filename") { k = norm(name); if (k in tfile) { known = 1; w = tfile[k] } }
      else if (type == "classname") { if (name in tclass) { known = 1; w = tclass[name] } }
      else { if (name in tname) { known = 1; w = tname[name] } }
      if (!known) {
        printf "No timing found for \"%s\"\n", name > "/dev/stderr"
        if (tdef != "") { known = 1; w = tdef + 0 }
      }
    } else if (by == "filesize") {
      cmd = "wc -c < " shq(name) " 2>/dev/null"
      size = ""
      if ((cmd | getline size) > 0 && size ~ /^[ \t]*[0-9]+[ \t]*$/) { known = 1; w = size + 0 }
      close(cmd)
    }
    # weights in microseconds (timings) or bytes (filesize); heaviest first, then by name
    units = (by == "timings") ? int(w * 1000000 + 0.5) : w
    printf "%016.0f\t%d\t%.0f\t%s\n", 1e15 - units, known, units, name
  }
}'

# Pass 2: greedy longest-processing-time bin packing. Weighted names (heaviest first) each go to the
# currently lightest node (lowest index on ties); names without a weight are then dealt round-robin
# over the nodes from lightest to heaviest, so new tests spread out instead of piling on one node.
# With --split-by=name every name is unweighted: an alphabetical round-robin.
PACK_AWK='
BEGIN {
  FS = "\t"; total = ENVIRON["NODE_TOTAL"] + 0; index_ = ENVIRON["NODE_INDEX"] + 0
  for (b = 0; b < total; b++) { load[b] = 0; count[b] = 0 }
}
{
  name = $4
  if ($2 == 1) {
    best = 0
    for (b = 1; b < total; b++) if (load[b] < load[best]) best = b
    load[best] += $3; count[best]++
    if (best == index_) print name
  } else { un[++nun] = name }
}
END {
  for (b = 0; b < total; b++) order[b] = b
  for (i = 1; i < total; i++) {
    v = order[i]; j = i - 1
    while (j >= 0 && load[order[j]] > load[v]) { order[j + 1] = order[j]; j-- }
    order[j + 1] = v
  }
  for (i = 1; i <= nun; i++) {
    b = order[(i - 1) % total]; count[b]++
    if (b == index_) print un[i]
  }
  if (ENVIRON["SHOW_COUNTS"] == "1") {
    all = 0; for (b = 0; b < total; b++) all += count[b]
    printf "node %d of %d: %d of %d tests\n", index_, total, count[index_], all > "/dev/stderr"
  }
}'

# "Rerun failed tests": keeps the input names (whitespace-separated, printed one per line) that
# name a failed test's file or classname (or its name, with --timings-type=testname), as CircleCI
# reruns the files and classes with at least one failure. Nothing recorded as failed, or no input
# name matching what failed (JUnit without file/classname attributes): every name is kept.
FAILED_AWK='
function norm(s,    cut) {
  while (substr(s, 1, 2) == "./") s = substr(s, 3)
  cut = 0
  if (pwd != "" && substr(s, 1, length(pwd) + 1) == pwd "/") cut = length(pwd) + 1
  if (wd != "" && length(wd) + 1 > cut && substr(s, 1, length(wd) + 1) == wd "/") cut = length(wd) + 1
  return substr(s, cut + 1)
}
BEGIN {
  pwd = ENVIRON["CWD"]; wd = ENVIRON["CIRCLE_WORKING_DIRECTORY"]
  if (substr(wd, 1, 1) == "~") wd = ENVIRON["HOME"] substr(wd, 2)
  sub(/\/+$/, "", pwd); sub(/\/+$/, "", wd)
  type = ENVIRON["TIMINGS_TYPE"]; verbose = (ENVIRON["VERBOSE"] == "1"); ff = ENVIRON["FAILED_FILE"]
  nfailed = 0; total = 0; wf = ""
  while ((getline line < ff) > 0) {
    if (substr(line, 1, 10) == "# workflow") { wf = substr(line, 12); continue }
    if (substr(line, 1, 7) == "# total") { total = substr(line, 9) + 0; continue }
    if (line == "" || substr(line, 1, 1) == "#") continue
    split(line, f, "\t")
    nfailed++
    fname[f[1]] = 1; fclass[f[2]] = 1
    if (f[3] != "") ffile[norm(f[3])] = 1
  }
  close(ff)
}
{ gsub(/\r/, ""); for (i = 1; i <= NF; i++) names[++n] = $i }
END {
  printf "received failed tests from workflow %s\n", wf > "/dev/stderr"
  if (nfailed == 0) {
    print "No failed tests were recorded for the previous run of this job: running all tests." > "/dev/stderr"
    for (i = 1; i <= n; i++) print names[i]
    exit
  }
  k = 0
  for (i = 1; i <= n; i++) {
    nm = names[i]
    if ((norm(nm) in ffile) || (nm in fclass) || (type == "testname" && (nm in fname))) kept[++k] = nm
  }
  if (verbose) printf "%d test(s) failed out of %d total test(s). Rerunning %d test file(s)\n", nfailed, total, k > "/dev/stderr"
  if (k == 0 && n > 0) {
    printf "None of the %d input test name(s) matches the file or classname of a failed test: running all tests.\n", n > "/dev/stderr"
    print "If all tests are being run instead of only failed tests, ensure your JUnit XML has a file or classname attribute." > "/dev/stderr"
    for (i = 1; i <= n; i++) print names[i]
    exit
  }
  for (i = 1; i <= k; i++) print kept[i]
}'

# Go-style durations ("10s", "1m30s", "1.5h", "250ms", a bare number = seconds) → seconds.
parse_duration() {
  printf '%s\n' "$1" | awk '
    { s = $0; t = 0; ok = (s != "")
      if (s ~ /^[0-9]+([.][0-9]*)?$/) { print s + 0; exit }
      while (s != "") {
        if (!match(s, /^[0-9]+([.][0-9]*)?/)) { ok = 0; break }
        v = substr(s, 1, RLENGTH) + 0; s = substr(s, RLENGTH + 1)
        if (substr(s, 1, 2) == "ms") { t += v / 1000; s = substr(s, 3) }
        else if (substr(s, 1, 2) == "us") { t += v / 1000000; s = substr(s, 3) }
        else if (substr(s, 1, 2) == "ns") { t += v / 1000000000; s = substr(s, 3) }
        else if (substr(s, 1, 1) == "h") { t += v * 3600; s = substr(s, 2) }
        else if (substr(s, 1, 1) == "m") { t += v * 60; s = substr(s, 2) }
        else if (substr(s, 1, 1) == "s") { t += v; s = substr(s, 2) }
        else { ok = 0; break }
      }
      if (ok) printf "%.6f\n", t; else exit 1 }'
}

is_uint() {
  case "$1" in '' | *[!0-9]*) return 1 ;; esac
  return 0
}

# Parses split/run flags into globals; sets OPT_FILE for a positional argument.
parse_split_flags() {
  cmdname=$1
  shift
  OPT_SPLIT_BY=name
  OPT_TIMINGS_TYPE=autodetect
  OPT_INDEX=${CIRCLE_NODE_INDEX:-0}
  OPT_TOTAL=${CIRCLE_NODE_TOTAL:-1}
  OPT_SHOW_COUNTS=0
  OPT_TIME_DEFAULT=
  OPT_TIMINGS_FILE=$(timings_path)
  OPT_COMMAND=
  OPT_HAVE_COMMAND=0
  OPT_VERBOSE=0
  OPT_FILE=
  while [ $# -gt 0 ]; do
    arg=$1
    shift
    case "$arg" in
      --*=*)
        flag=${arg%%=*}
        value=${arg#*=}
        ;;
      --show-counts | --verbose | -v | --help | -h)
        flag=$arg
        value=
        ;;
      --*)
        flag=$arg
        [ $# -gt 0 ] || die "tests $cmdname: flag needs an argument: $flag"
        value=$1
        shift
        ;;
      -)
        flag=
        value=-
        ;;
      -*) die "tests $cmdname: unknown flag: $arg" ;;
      *)
        flag=
        value=$arg
        ;;
    esac
    case "$flag" in
      '')
        [ "$cmdname" = split ] || die "tests $cmdname: unexpected argument \"$value\" (the test names are read from stdin)"
        [ -z "$OPT_FILE" ] || die "tests split: only one FILE argument is accepted"
        OPT_FILE=$value
        ;;
      --split-by)
        case "$value" in
          name | filesize | timings) OPT_SPLIT_BY=$value ;;
          *) die "tests $cmdname: invalid --split-by \"$value\": allowed values are \"name\", \"filesize\", and \"timings\"" ;;
        esac
        ;;
      --timings-type)
        case "$value" in
          filename | file) OPT_TIMINGS_TYPE=filename ;;
          classname) OPT_TIMINGS_TYPE=classname ;;
          testname | name) OPT_TIMINGS_TYPE=testname ;;
          autodetect) OPT_TIMINGS_TYPE=autodetect ;;
          *) die "tests $cmdname: invalid --timings-type \"$value\": allowed values are \"classname\", \"filename\", \"testname\" and \"autodetect\"" ;;
        esac
        ;;
      --index) OPT_INDEX=$value ;;
      --total) OPT_TOTAL=$value ;;
      --show-counts) OPT_SHOW_COUNTS=1 ;;
      --time-default)
        OPT_TIME_DEFAULT=$(parse_duration "$value") ||
          die "tests $cmdname: invalid --time-default \"$value\" (use a duration such as 10s, 1m30s or 250ms)"
        ;;
      --timings-file) OPT_TIMINGS_FILE=$value ;;
      --command)
        [ "$cmdname" = run ] || die "tests $cmdname: unknown flag: --command"
        OPT_COMMAND=$value
        OPT_HAVE_COMMAND=1
        ;;
      --verbose | -v) OPT_VERBOSE=1 ;;
      --help | -h)
        supported
        exit 0
        ;;
      *) die "tests $cmdname: unknown flag: $flag" ;;
    esac
  done
  is_uint "$OPT_INDEX" || die "tests $cmdname: invalid index \"$OPT_INDEX\" (from --index or CIRCLE_NODE_INDEX): expected a number"
  is_uint "$OPT_TOTAL" || die "tests $cmdname: invalid total \"$OPT_TOTAL\" (from --total or CIRCLE_NODE_TOTAL): expected a number"
  [ "$OPT_TOTAL" -ge 1 ] || die "tests $cmdname: total must be at least 1"
  [ "$OPT_INDEX" -lt "$OPT_TOTAL" ] || die "tests $cmdname: index $OPT_INDEX must be less than total $OPT_TOTAL"
}

# Reads whitespace-separated names from stdin; prints this node's share, one per line, sorted.
split_stdin() {
  awk '{ gsub(/\r/, ""); for (i = 1; i <= NF; i++) print $i }' | LC_ALL=C sort -u |
    CWD=$(pwd) SPLIT_BY=$OPT_SPLIT_BY TIMINGS_TYPE=$OPT_TIMINGS_TYPE TIME_DEFAULT=$OPT_TIME_DEFAULT \
      TIMINGS_FILE=$OPT_TIMINGS_FILE awk "$WEIGH_AWK" |
    LC_ALL=C sort |
    NODE_TOTAL=$OPT_TOTAL NODE_INDEX=$OPT_INDEX SHOW_COUNTS=$OPT_SHOW_COUNTS awk "$PACK_AWK" |
    LC_ALL=C sort
}

tests_split() {
  parse_split_flags split "$@"
  if [ -n "$OPT_FILE" ] && [ "$OPT_FILE" != - ]; then
    [ -r "$OPT_FILE" ] || die "tests split: cannot read \"$OPT_FILE\": no such file"
    split_stdin <"$OPT_FILE"
  else
    split_stdin
  fi
}

# stdin → the names of failed tests among it (see FAILED_AWK), one per line
keep_failed_tests() {
  CWD=$(pwd) TIMINGS_TYPE=$OPT_TIMINGS_TYPE VERBOSE=$OPT_VERBOSE FAILED_FILE=$CIRCLE_INTERNAL_FAILED_TESTS \
    awk "$FAILED_AWK"
}

tests_run() {
  parse_split_flags run "$@"
  [ "$OPT_HAVE_COMMAND" = 1 ] && [ -n "$OPT_COMMAND" ] ||
    die "tests run: --command is required (e.g. --command=\"xargs bundle exec rspec\")"
  if [ -n "${CIRCLE_INTERNAL_FAILED_TESTS:-}" ]; then
    [ -r "$CIRCLE_INTERNAL_FAILED_TESTS" ] ||
      die "tests run: cannot read the failed tests staged at $CIRCLE_INTERNAL_FAILED_TESTS (CIRCLE_INTERNAL_FAILED_TESTS)"
    shard=$(keep_failed_tests | split_stdin) || exit 1
  else
    shard=$(split_stdin) || exit 1
  fi
  if [ -z "$shard" ]; then
    [ "$OPT_VERBOSE" = 0 ] || printf 'No tests to run on node %s of %s; not running the command.\n' "$OPT_INDEX" "$OPT_TOTAL" >&2
    exit 0
  fi
  if [ "$OPT_VERBOSE" = 1 ]; then
    printf 'Running tests on node %s of %s:\n%s\n' "$OPT_INDEX" "$OPT_TOTAL" "$shard" >&2
    printf 'Command: %s\n' "$OPT_COMMAND" >&2
  fi
  shell=/bin/sh
  [ -x /bin/bash ] && shell=/bin/bash
  # CircleCI hands the names to the command on stdin separated by spaces, without a final newline
  # (its PHPUnit example relies on `xargs -d" "`).
  printf '%s' "$shard" | tr '\n' ' ' | "$shell" -c "$OPT_COMMAND"
}

# ---------------------------------------------------------------------------------------------
# step halt, env subst

step_halt() {
  [ $# -eq 0 ] || die "step halt: unexpected argument \"$1\""
  file=$(halt_path)
  dir=${file%/*}
  [ -z "$dir" ] || [ "$dir" = "$file" ] || mkdir -p "$dir" || die "step halt: cannot create $dir"
  : >"$file" || die "step halt: cannot write $file"
}

ENVSUBST_AWK='
{
  line = $0; out = ""
  while (match(line, /[$]([{][A-Za-z_][A-Za-z0-9_]*[}]|[A-Za-z_][A-Za-z0-9_]*)/)) {
    v = substr(line, RSTART + 1, RLENGTH - 1); gsub(/[{}]/, "", v)
    out = out substr(line, 1, RSTART - 1) ENVIRON[v]
    line = substr(line, RSTART + RLENGTH)
  }
  print out line
}'

env_subst() {
  if [ $# -gt 0 ]; then
    printf '%s\n' "$*" | awk "$ENVSUBST_AWK"
  else
    awk "$ENVSUBST_AWK"
  fi
}

# ---------------------------------------------------------------------------------------------

case "${1:-}" in
  tests)
    shift
    sub=${1:-}
    [ $# -eq 0 ] || shift
    case "$sub" in
      glob) tests_glob "$@" ;;
      split) tests_split "$@" ;;
      run) tests_run "$@" ;;
      *) unknown "tests${sub:+ $sub}" ;;
    esac
    ;;
  step | task)
    verb=$1
    shift
    case "${1:-}" in
      halt)
        shift
        step_halt "$@"
        ;;
      *) unknown "$verb${1:+ $1}" ;;
    esac
    ;;
  env)
    shift
    case "${1:-}" in
      subst)
        shift
        env_subst "$@"
        ;;
      *) unknown "env${1:+ $1}" ;;
    esac
    ;;
  version | --version)
    printf 'circleci (Torus in-job CLI) %s\n' "$TORUS_SHIM_VERSION"
    ;;
  help | --help | -h)
    supported
    ;;
  '')
    supported >&2
    exit 1
    ;;
  *) unknown "$*" ;;
esac
