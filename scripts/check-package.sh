#!/usr/bin/env bash
# The package as a user gets it: build, `npm pack`, check what the tarball
# holds, install it into a fresh project outside the repository (with
# `effect` as its peer, at the repository's version), type-check a consumer
# program against the installed types (strict, NodeNext), and run it with
# Node 22 on the in-memory store, on Redis, and with the ledger in
# PostgreSQL.
#
#   npm run check:package               # or: bash scripts/check-package.sh
#   KEEP=1 npm run check:package        # keep the scratch project and print where
#
# Redis: REDIS_URL, or 127.0.0.1:6379. PostgreSQL: DATABASE_URL, or
# postgres://postgres@127.0.0.1:5432/test. Without one the run on it is
# skipped with a notice, except in CI (CI=true), where it fails.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
started=$SECONDS

# Node 22 from the node@22 devDependency when the machine's own is older;
# npm itself then runs on it too.
export PATH="$repo/node_modules/.bin:$PATH"
echo "check-package: node $(node --version), npm $(npm --version)"

work="$(mktemp -d "${TMPDIR:-/tmp}/check-package-XXXXXX")"
cleanup() {
  if [ "${KEEP:-}" = "1" ]; then echo "check-package: kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- build and pack -------------------------------------------------------------

npm run build
# `npm pack` runs `prepack` (the build again, as `npm publish` would).
tarball="$work/$(npm pack --pack-destination "$work" --json | node -e '
  let s = ""; process.stdin.on("data", (d) => s += d).on("end", () => console.log(JSON.parse(s)[0].filename))')"
echo "check-package: packed $(basename "$tarball") ($(du -k "$tarball" | cut -f1) KiB)"

contents="$(tar -tzf "$tarball")"
missing=0
for file in package.json README.md LICENSE CHANGELOG.md \
  dist/index.js dist/index.d.ts dist/index.js.map dist/index.d.ts.map dist/Budget.js src/index.ts \
  dist/sql-pg.js dist/sql-pg.d.ts dist/PgLedger.js; do
  if ! grep -qx "package/$file" <<<"$contents"; then echo "check-package: the tarball lacks $file" >&2; missing=1; fi
done
if grep -E '^package/(test|scripts|bench|examples|docs|\.ci|node_modules)/' <<<"$contents" >&2; then
  echo "check-package: the tarball ships files that are not the library's (above)" >&2
  missing=1
fi
[ "$missing" = 0 ] || exit 1

# --- a fresh consumer project -----------------------------------------------------

version_of() { node -p "require('./package.json').devDependencies['$1']"; }
effect_version="$(version_of effect)"
platform_node_version="$(version_of @effect/platform-node)"
redis_version="$(version_of redis)"
sql_pg_version="$(version_of @effect/sql-pg)"
typescript_version="$(version_of typescript)"
types_node_version="$(version_of @types/node)"

consumer="$work/consumer"
mkdir -p "$consumer/src"
cp scripts/consumer/main.ts "$consumer/src/main.ts"
cat >"$consumer/package.json" <<'EOF'
{ "name": "consumer", "version": "0.0.0", "private": true, "type": "module" }
EOF
cat >"$consumer/tsconfig.json" <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2022", "DOM"],
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "exactOptionalPropertyTypes": true,
    "noUnusedLocals": true,
    "skipLibCheck": false,
    "types": ["node"],
    "rootDir": "src",
    "outDir": "out"
  },
  "include": ["src"]
}
EOF

cd "$consumer"
echo "check-package: installing the tarball with effect@$effect_version into $consumer"
# --prefer-offline: packages already in npm's cache come from there.
npm install --no-audit --no-fund --prefer-offline --loglevel=error \
  "$tarball" \
  "effect@$effect_version" \
  "@effect/platform-node@$platform_node_version" \
  "redis@$redis_version" \
  "@effect/sql-pg@$sql_pg_version" \
  "typescript@$typescript_version" \
  "@types/node@$types_node_version"

# The installed package must be the tarball, with effect as a peer, not bundled.
node -e '
  const pkg = require("./node_modules/effect-token-budget/package.json")
  const deps = Object.keys(pkg.dependencies ?? {})
  if (deps.length > 0) { console.error("check-package: runtime dependencies:", deps); process.exit(1) }
  if (!pkg.peerDependencies?.effect) { console.error("check-package: effect is not a peer dependency"); process.exit(1) }
'
# The exports map closes internal modules.
if node --input-type=module -e 'await import("effect-token-budget/internal/memoryStore.js")' 2>/dev/null; then
  echo "check-package: effect-token-budget/internal/* is importable; the exports map should close it" >&2
  exit 1
fi

# skipLibCheck false: the published .d.ts are checked in full (effect's own
# need the DOM lib for CryptoKey and Transferable, hence "DOM" in lib).
echo "check-package: type-checking the consumer (strict, NodeNext, skipLibCheck false)"
./node_modules/.bin/tsc -p tsconfig.json

node out/main.js memory

# Runs the consumer's `mode` if `name`'s server at `url` answers (port
# `default_port` if the url gives none); one that does not fails the check
# in CI and is skipped, with a notice, elsewhere.
run_against() {
  local name="$1" url="$2" default_port="$3" mode="$4"
  local hostport="${url#*://}"
  hostport="${hostport##*@}"
  hostport="${hostport%%/*}"
  local host="${hostport%%:*}" port="${hostport##*:}"
  [ "$port" != "$hostport" ] || port="$default_port"
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    node out/main.js "$mode"
  elif [ -n "${CI:-}" ]; then
    echo "check-package: $name does not answer at $host:$port: the $name run cannot run" >&2
    exit 1
  else
    echo "check-package: $name does not answer at $host:$port: skipping the $name run (start one to run it)"
  fi
}

run_against Redis "${REDIS_URL:-redis://127.0.0.1:6379}" 6379 redis
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
run_against PostgreSQL "$DATABASE_URL" 5432 postgres

echo "check-package: ok ($((SECONDS - started))s)"
