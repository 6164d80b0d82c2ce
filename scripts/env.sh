# Sourced by the other scripts: fills in from .env what the environment does not set.
if [ -f "$root/.env" ]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue
    [ -z "${!key+set}" ] && export "$key=$value"
  done < <(grep -v '^\s*#' "$root/.env")
fi
