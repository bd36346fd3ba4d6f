#!/bin/bash
# The part of the opensearch image's entrypoint the compose file relies on: every environment variable whose
# name looks like a setting (discovery.type=single-node) becomes an -E option. DISABLE_SECURITY_PLUGIN and
# DISABLE_INSTALL_DEMO_CONFIG need nothing here: this build has no security plugin.
set -euo pipefail
cd /usr/share/opensearch
opts=()
while IFS= read -r -d '' entry; do
  name=${entry%%=*}
  if [[ $name =~ ^[a-z0-9_]+(\.[a-z0-9_]+)+$ ]]; then opts+=("-E$entry"); fi
done < <(env -0)
exec bin/opensearch "${opts[@]}" "$@"
