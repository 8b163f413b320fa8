#!/usr/bin/env bash
# tests/ci_runtime_libs_test.sh: the runtime Docker images cannot ship missing a shared library.
#
# Every library the built qdrop-gpu loads (the whole `ldd` closure, not only its NEEDED entries)
# is mapped to its Debian package (`dpkg -S`), and each package must be
#   - installed by `scripts/install_deps.sh --runtime` (its --print list, optional ones included),
#     or a dependency of one of those (Depends/Pre-Depends, recursively, from dpkg's database), or
#   - in every Debian/Ubuntu base image (Priority required, or Essential), or
#   - CUDA's (cudart, cuBLAS, cuDNN, the driver): the nvidia/cuda runtime image provides those.
# Then the Dockerfiles: their runtime stage installs packages only through install_deps.sh
# --runtime, and copies the binary this test checked (build/qdrop-gpu); the Ubuntu branch of the
# list is the Debian one with the distribution's own package names.
# Env: QD_BIN (CTest). Exit 0 pass, 1 fail, 77 for a sanitizer build (libasan is never shipped).
set -uo pipefail
SRC=${QD_SRC_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
BIN=${QD_BIN:-$SRC/build/qdrop-gpu}
fail=0
bad() { echo "FAIL $*"; fail=1; }
ok() { echo "ok   $*"; }
[[ -x "$BIN" ]] || { echo "FAIL $BIN not built"; exit 1; }
for t in ldd dpkg dpkg-query; do command -v "$t" >/dev/null || { echo "FAIL $t not found (Debian/Ubuntu tools)"; exit 1; }; done
if ldd "$BIN" | grep -q -E 'libasan|libubsan'; then
    echo "SKIP: $BIN is a sanitizer build (the images build without sanitizers)"
    exit 77
fi

# ---- packages install_deps.sh --runtime installs, and everything they depend on ----
mapfile -t listed < <(bash "$SRC/scripts/install_deps.sh" --runtime --print | tr -d '?')
[[ ${#listed[@]} -gt 3 ]] || { echo "FAIL install_deps.sh --runtime --print listed: ${listed[*]}"; exit 1; }
# dpkg's database in one query (one dpkg call per package is minutes on a busy machine)
declare -A deps_of=() installed_pkg=() prio_of=()
while IFS=$'\t' read -r p st pr es d; do
    [[ "$st" == *"ok installed" ]] || continue
    installed_pkg[$p]=1
    deps_of[$p]=$d
    prio_of[$p]="$pr $es"
done < <(dpkg-query -W -f='${Package}\t${Status}\t${Priority}\t${Essential}\t${Depends}, ${Pre-Depends}\n')
declare -A covered=()
queue=("${listed[@]}")
while [[ ${#queue[@]} -gt 0 ]]; do
    p=${queue[0]}
    queue=("${queue[@]:1}")
    p=${p%%:*}
    [[ -n "$p" && -z "${covered[$p]:-}" ]] || continue
    covered[$p]=1
    # "a (>= 1) | b, c": every alternative that is installed here
    while read -r d; do
        d=${d%% *}
        d=${d%%:*}
        [[ -n "$d" && -n "${installed_pkg[$d]:-}" ]] && queue+=("$d")
    done < <(echo "${deps_of[$p]:-}" | tr ',|' '\n\n' | sed 's/^ *//')
done
ok "install_deps.sh --runtime: ${listed[*]} (${#covered[@]} packages with their dependencies)"

# ---- every library the binary loads ----
mapfile -t libs < <(ldd "$BIN" | awk '/=> \// {print $1, $3}')
# owners of all candidate paths in one dpkg -S call (path as loaded, resolved, with/without /usr)
declare -A owner=()
cands=()
for l in "${libs[@]}"; do
    path=${l#* }
    real=$(readlink -f "$path")
    cands+=("$real" "$path" "/usr$real" "${real#/usr}")
done
while IFS= read -r line; do
    pk=${line%%: *}
    f=${line#*: }
    [[ "$line" == *": /"* ]] && owner[$f]=${pk%%:*}
done < <(dpkg -S "${cands[@]}" 2>/dev/null | sed 's/, [^:]*:/:/')
n=0
for l in "${libs[@]}"; do
    name=${l%% *}
    path=${l#* }
    n=$((n + 1))
    real=$(readlink -f "$path")
    pkg=""
    for cand in "$real" "$path" "/usr$real" "${real#/usr}"; do
        pkg=${owner[$cand]:-}
        [[ -n "$pkg" ]] && break
    done
    case "$name $real $pkg" in
    *cuda* | *cudnn* | *cublas* | *libnv* | *nvidia*) echo "     $name: CUDA (${pkg:-not a Debian package}), from the nvidia/cuda runtime image"; continue ;;
    esac
    if [[ -z "$pkg" ]]; then bad "$name ($real) belongs to no Debian package: the image could not install it"; continue; fi
    prio=${prio_of[$pkg]:-}
    if [[ -n "${covered[$pkg]:-}" ]]; then
        echo "     $name: $pkg (install_deps.sh --runtime)"
    elif [[ "$prio" == required* || "$prio" == *yes ]]; then
        echo "     $name: $pkg (base image: $prio)"
    else
        bad "$name is loaded by $(basename "$BIN") but its package $pkg is not installed by install_deps.sh --runtime (nor by anything it installs)"
    fi
done
[[ $n -gt 3 ]] || bad "ldd $BIN listed only $n libraries"
[[ $fail == 0 ]] && ok "all $n libraries of $(basename "$BIN") are covered"

# ---- the Ubuntu branch is the Debian list with Ubuntu's names ----
deb=$(QD_DEPS_DISTRO=debian bash "$SRC/scripts/install_deps.sh" --runtime --print | sed 's/^libjpeg62-turbo$/JPEG/' | sort | tr '\n' ' ')
ubu=$(QD_DEPS_DISTRO=ubuntu bash "$SRC/scripts/install_deps.sh" --runtime --print | sed 's/^libjpeg-turbo8$/JPEG/' | sort | tr '\n' ' ')
if [[ "$deb" == "$ubu" ]]; then ok "Ubuntu --runtime list matches Debian's (libjpeg-turbo8 for libjpeg62-turbo)"; else bad "--runtime lists differ: Debian [$deb] Ubuntu [$ubu]"; fi

# ---- the Dockerfiles' runtime stage ----
for df in "$SRC/docker/Dockerfile" "$SRC/docker/Dockerfile.cpu"; do
    [[ -f "$df" ]] || { bad "$df missing"; continue; }
    stage=$(awk 'BEGIN{IGNORECASE=1} /^FROM /{s=""} {s=s $0 "\n"} END{printf "%s", s}' "$df")
    # joined continuation lines of the last stage
    runs=$(echo "$stage" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -E '^RUN ')
    if echo "$runs" | grep -q 'install_deps.sh --runtime'; then ok "$(basename "$df"): runtime stage runs install_deps.sh --runtime"; else bad "$(basename "$df"): runtime stage does not run install_deps.sh --runtime"; fi
    if echo "$runs" | grep -E 'apt-get +install|apt +install' | grep -v 'install_deps.sh' | grep -q .; then
        bad "$(basename "$df"): runtime stage installs packages outside install_deps.sh --runtime: $(echo "$runs" | grep -E 'apt(-get)? +install' | head -1)"
    fi
    if echo "$stage" | grep -qE '^COPY --from=build /src/build/qdrop-gpu '; then ok "$(basename "$df"): ships build/qdrop-gpu"; else bad "$(basename "$df"): runtime stage does not copy /src/build/qdrop-gpu"; fi
done
exit $fail
