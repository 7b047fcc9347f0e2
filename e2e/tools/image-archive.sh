#!/usr/bin/env bash
# Writes a docker-archive image tarball (what `docker save` writes, and what
# `ctr images import` and `docker load` read) of a FROM-scratch image holding one static
# binary at /<basename>, without any container engine: bash, GNU tar and sha256sum only.
# The output is reproducible: the same inputs give the same bytes.
#
# Usage:
#   image-archive.sh --dockerfile FILE --name REPO:TAG --out FILE.tar [--binary PATH]
#   image-archive.sh --dockerfile FILE --check
#   image-archive.sh --binary PATH --name REPO:TAG --out FILE.tar
#                    [--user UID:GID] [--entrypoint '/x','serve' | --entrypoint '["/x","serve"]']
#                    [--cmd 'a','b'] [--port 5001[/tcp]]... [--env KEY=VALUE]... [--label KEY=VALUE]...
#                    [--workdir DIR]
# --dockerfile: the image as that Dockerfile defines it (the one definition of our images;
# `docker build` reads the same file), the binary from its `ARG BINARY=` unless --binary is
# given. Only what a one-binary FROM-scratch image holds is understood (FROM scratch, ARG
# BINARY=, COPY ${BINARY} /name, USER, EXPOSE, ENV, LABEL, WORKDIR, ENTRYPOINT and CMD in JSON
# form); anything else is an error, so the two builds cannot drift. --check reads the file and
# prints the image config it defines, writing nothing (`make check` runs it on every Dockerfile).
# --entrypoint and --cmd take a comma-separated list, or a JSON array of strings verbatim.
# The default entrypoint is ["/<basename>"].
set -euo pipefail

die() { printf 'image-archive.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

# JSON string literal of $1 (escapes backslash, quote and control characters).
json_str() {
  local s=$1 out="" c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      '"') out+='\"' ;;
      \\) out+="\\\\" ;;
      $'\n') out+='\n' ;;
      $'\t') out+='\t' ;;
      $'\r') out+='\r' ;;
      *)
        if [[ $c < ' ' ]]; then out+=$(printf '\\u%04x' "'$c"); else out+=$c; fi ;;
    esac
  done
  printf '"%s"' "$out"
}

# JSON array from a comma-separated list, or a JSON array given verbatim.
json_list() {
  local v=$1
  if [[ $v == \[* ]]; then printf '%s' "$v"; return; fi
  local IFS=, parts p out="" sep=""
  read -r -a parts <<<"$v"
  for p in "${parts[@]}"; do
    p=${p#\'}; p=${p%\'}
    out+="$sep$(json_str "$p")"; sep=","
  done
  printf '[%s]' "$out"
}

# from_dockerfile FILE: sets the image's definition (df_binary, dest, user, ports, envs, labels,
# workdir, entrypoint, cmd) from FILE, or dies naming what it cannot represent.
from_dockerfile() {
  local file=$1 line instr rest src dst extra from=""
  [ -f "$file" ] || die "Dockerfile not found: $file"
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line%$'\r'}
    [[ $line =~ ^[[:space:]]*(#|$) ]] && continue
    [[ $line != *\\ ]] || die "$file: line continuations are not supported: $line"
    instr=${line%%[[:space:]]*} rest=${line#*[[:space:]]}
    [ "$rest" != "$line" ] || die "$file: $instr without arguments"
    case ${instr^^} in
      FROM) [ "$rest" = scratch ] || die "$file: only FROM scratch is supported, not FROM $rest"; from=1 ;;
      ARG) [[ $rest =~ ^BINARY=[^[:space:]]+$ ]] || die "$file: only ARG BINARY=<path> is supported: $line"
        df_binary=${rest#BINARY=} ;;
      COPY) read -r src dst extra <<<"$rest"
        # shellcheck disable=SC2016 # the Dockerfile's own ${BINARY}, literally
        if [ "$src" != '${BINARY}' ] || [[ ! $dst =~ ^/[^/[:space:]]+$ ]] || [ -n "$extra" ]; then
          die "$file: only COPY \${BINARY} /<name> is supported: $line"
        fi
        dest=${dst#/} ;;
      USER) user=$rest ;;
      EXPOSE) read -r -a extra <<<"$rest"; ports+=("${extra[@]}") ;;
      ENV | LABEL) [[ $rest =~ ^[A-Za-z_][A-Za-z0-9_.-]*=[^[:space:]\"\']*$ ]] ||
          die "$file: only $instr KEY=VALUE (one, unquoted) is supported: $line"
        if [ "${instr^^}" = ENV ]; then envs+=("$rest"); else labels+=("$rest"); fi ;;
      WORKDIR) workdir=$rest ;;
      ENTRYPOINT | CMD) [[ $rest =~ ^\[\ *\"[^\"\\]*\"(\ *,\ *\"[^\"\\]*\")*\ *\]$ ]] ||
          die "$file: only the JSON form of $instr (strings without escapes) is supported: $line"
        if [ "${instr^^}" = CMD ]; then cmd=$rest; else entrypoint=$rest; fi ;;
      *) die "$file: $instr is not supported (one static binary, FROM scratch)" ;;
    esac
  done <"$file"
  [ -n "$from" ] || die "$file: no FROM scratch"
  [ -n "$dest" ] || die "$file: no COPY \${BINARY} /<name>"
}

binary="" name="" out="" user="" entrypoint="" cmd="" workdir="/" dockerfile="" check=0
df_binary="" dest=""
ports=() envs=() labels=()
while [ $# -gt 0 ]; do
  case $1 in
    --dockerfile) dockerfile=${2:?--dockerfile needs a file}; shift 2 ;;
    --check) check=1; shift ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --name) name=${2:?--name needs REPO:TAG}; shift 2 ;;
    --out) out=${2:?--out needs a file}; shift 2 ;;
    --user) user=${2:?--user needs UID:GID}; shift 2 ;;
    --entrypoint) entrypoint=${2:?--entrypoint needs a list}; shift 2 ;;
    --cmd) cmd=${2:?--cmd needs a list}; shift 2 ;;
    --port) ports+=("${2:?--port needs a port}"); shift 2 ;;
    --env) envs+=("${2:?--env needs KEY=VALUE}"); shift 2 ;;
    --label) labels+=("${2:?--label needs KEY=VALUE}"); shift 2 ;;
    --workdir) workdir=${2:?--workdir needs a directory}; shift 2 ;;
    -h | --help) usage 0 ;;
    *) printf 'image-archive.sh: unknown argument %s\n' "$1" >&2; usage ;;
  esac
done
if [ -n "$dockerfile" ]; then
  if [ -n "$user$entrypoint$cmd" ] || [ "$workdir" != / ] || [ $((${#ports[@]} + ${#envs[@]} + ${#labels[@]})) != 0 ]; then
    die "--dockerfile defines the image: give only --binary, --name, --out (or --check) with it"
  fi
  from_dockerfile "$dockerfile"
  [ -n "$binary" ] || binary=$df_binary
  [ -n "$binary" ] || die "$dockerfile: no ARG BINARY=<path>, and no --binary"
elif [ $check = 1 ]; then
  usage
fi
if [ $check = 0 ]; then
  if [ -z "$binary" ] || [ -z "$name" ] || [ -z "$out" ]; then usage; fi
  [ -f "$binary" ] || die "binary not found: $binary"
fi
[[ $name == *:* && ${name##*:} != */* ]] || name="$name:latest"
for p in "${ports[@]}"; do
  [[ $p =~ ^[0-9]{1,5}(/(tcp|udp|sctp))?$ ]] || die "bad --port $p (want 5001 or 5001/tcp)"
done
for e in "${envs[@]}" "${labels[@]}"; do [[ $e == ?*=* ]] || die "bad KEY=VALUE: $e"; done
if [ -n "$user" ]; then [[ $user =~ ^[0-9A-Za-z_.-]+(:[0-9A-Za-z_.-]+)?$ ]] || die "bad --user $user"; fi
if [ $check = 0 ] && file "$binary" 2>/dev/null | grep -q 'dynamically linked'; then
  printf 'image-archive.sh: warning: %s is dynamically linked; a FROM-scratch image has no libc\n' "$binary" >&2
fi

# The binary's name in the image: the Dockerfile's COPY destination, or its own.
base=${dest:-$(basename "$binary")}
[ -n "$entrypoint" ] || entrypoint="/$base"
env_json=$(json_str "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
for e in "${envs[@]}"; do env_json+=",$(json_str "$e")"; done
config="{\"Env\":[$env_json],\"Entrypoint\":$(json_list "$entrypoint")"
[ -z "$cmd" ] || config+=",\"Cmd\":$(json_list "$cmd")"
[ -z "$user" ] || config+=",\"User\":$(json_str "$user")"
config+=",\"WorkingDir\":$(json_str "$workdir")"
if [ ${#ports[@]} -gt 0 ]; then
  sep="" pj=""
  for p in "${ports[@]}"; do [[ $p == */* ]] || p="$p/tcp"; pj+="$sep$(json_str "$p"):{}"; sep=","; done
  config+=",\"ExposedPorts\":{$pj}"
fi
if [ ${#labels[@]} -gt 0 ]; then
  sep="" lj=""
  for l in "${labels[@]}"; do lj+="$sep$(json_str "${l%%=*}"):$(json_str "${l#*=}")"; sep=","; done
  config+=",\"Labels\":{$lj}"
fi
config+="}"
if [ $check = 1 ]; then
  printf '%s: /%s (from %s), config %s\n' "$dockerfile" "$base" "$binary" "$config"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tarflags=(--sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu)

# The layer: the binary alone, at /<basename>, mode 0755, owned by root.
mkdir -p "$tmp/rootfs"
cp "$binary" "$tmp/rootfs/$base"
chmod 0755 "$tmp/rootfs/$base"
tar -C "$tmp/rootfs" "${tarflags[@]}" -cf "$tmp/layer.tar" "$base"
diff_id=$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)

epoch="1970-01-01T00:00:00Z"
printf '{"architecture":"amd64","os":"linux","created":"%s","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"%s","created_by":%s}]}' \
  "$epoch" "$config" "$diff_id" "$epoch" "$(json_str "image-archive.sh: /$base")" >"$tmp/config.json"
config_id=$(sha256sum "$tmp/config.json" | cut -d' ' -f1)

mkdir -p "$tmp/archive/$diff_id"
mv "$tmp/config.json" "$tmp/archive/$config_id.json"
mv "$tmp/layer.tar" "$tmp/archive/$diff_id/layer.tar"
printf '1.0' >"$tmp/archive/$diff_id/VERSION"
printf '{"id":"%s","created":"%s","container_config":{},"config":%s,"os":"linux","architecture":"amd64"}' \
  "$diff_id" "$epoch" "$config" >"$tmp/archive/$diff_id/json"
printf '[{"Config":"%s.json","RepoTags":[%s],"Layers":["%s/layer.tar"]}]' \
  "$config_id" "$(json_str "$name")" "$diff_id" >"$tmp/archive/manifest.json"
repo=${name%:*} tag=${name##*:}
printf '{%s:{%s:"%s"}}' "$(json_str "$repo")" "$(json_str "$tag")" "$diff_id" >"$tmp/archive/repositories"
mkdir -p "$(dirname "$out")"
tar -C "$tmp/archive" "${tarflags[@]}" -cf "$tmp/out.tar" manifest.json repositories "$config_id.json" "$diff_id"
mv "$tmp/out.tar" "$out"
printf 'image-archive.sh: wrote %s (%s, config sha256:%s, %s bytes)\n' "$out" "$name" "$config_id" "$(stat -c %s "$out")" >&2
