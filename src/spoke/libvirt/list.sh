#!/bin/sh
# list.sh: "<vm id> <state>" for every capsul domain, running or not. Other domains are not listed.
. "$(dirname "$0")/common.sh"
names=$("$virsh" list --all --name)
printf '%s\n' "$names" | while IFS= read -r name; do
  case $name in capsul-*) ;; *) continue ;; esac
  state=$(domain_state "$name")
  if [ -n "$state" ]; then printf '%s %s\n' "$name" "$state"; fi # it may be gone since the list
done
