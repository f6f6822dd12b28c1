#!/bin/sh
# Shows that the recipes of README.md beside this file work as written on Debian 12,
# without touching the host: in a temporary root it creates the `tally` user
# (tally.sysusers.conf) and its directories (tally.tmpfiles.conf), then, as that
# user and with the units' UMask=0077, writes the metrics file where Debian's
# prometheus-node-exporter reads it and checks another user can read it, and runs
# the crontab line of tally.cron (paths moved into the temporary root) for a night
# that succeeds, one that fails and one whose previous run still holds the lock,
# checking what cron would mail each time.
#
# Usage, as root: systemd/check-recipes.sh PATH-TO-TALLY-BINARY
# Needs systemd-sysusers, systemd-tmpfiles, setpriv and flock (all in Debian 12).
set -eu

if [ "$#" -ne 1 ]; then
    echo "usage: $0 PATH-TO-TALLY-BINARY" >&2
    exit 2
fi
tally_binary=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
# The tally user must reach the temporary root (mktemp makes it 0700).
chmod 0755 "$root"

fail() {
    echo "check-recipes: FAILED: $*" >&2
    exit 1
}
step() {
    echo "check-recipes: $*"
}

# 1. The user, as systemd-sysusers creates it from the installed snippet.
mkdir -p "$root/etc"
install -D -m 0644 "$here/tally.sysusers.conf" "$root/usr/lib/sysusers.d/tally.conf"
systemd-sysusers --root="$root" 2>/dev/null
uid=$(awk -F: '$1 == "tally" { print $3 }' "$root/etc/passwd")
gid=$(awk -F: '$1 == "tally" { print $3 }' "$root/etc/group")
[ -n "$uid" ] && [ -n "$gid" ] || fail "systemd-sysusers did not create the user and group tally"
shell=$(awk -F: '$1 == "tally" { print $7 }' "$root/etc/passwd")
[ "$shell" = /usr/sbin/nologin ] || fail "tally's shell is $shell, not /usr/sbin/nologin"
step "user tally created ($uid:$gid)"

# 2. The directories. libacl resolves the ACL's user name through the host's user
# database, where this temporary root's tally does not exist: the check uses its id.
install -D -m 0644 "$here/tally.tmpfiles.conf" "$root/usr/lib/tmpfiles.d/tally.conf"
sed -i "s/user:tally:/user:$uid:/" "$root/usr/lib/tmpfiles.d/tally.conf"
systemd-tmpfiles --root="$root" --create
for directory in var/lib/tally var/log/tally; do
    found=$(stat -c '%u:%g %a' "$root/$directory")
    [ "$found" = "$uid:$gid 750" ] || fail "/$directory is $found, not $uid:$gid 750"
done
textfile_directory="$root/var/lib/prometheus/node-exporter"
found=$(stat -c '%u:%g' "$textfile_directory")
[ "$found" = "0:0" ] || fail "/var/lib/prometheus/node-exporter changed hands: $found"
step "directories created with their owners"

as_tally() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups "$@"
}
database="$root/var/lib/tally/tally.db"
cd "$root/var/lib/tally"

# 3. The metrics recipe, as the billing service runs: user tally, UMask=0077.
(umask 0077 && as_tally env -i TALLY_DATABASE_URL="sqlite://$database" "$tally_binary" migrate >/dev/null)
metrics="$textfile_directory/tally_billing.prom"
(umask 0077 && as_tally env -i TALLY_DATABASE_URL="sqlite://$database" \
    "$tally_binary" run billing --metrics-file "$metrics" >/dev/null 2>&1) ||
    fail "tally run billing --metrics-file failed as user tally"
[ -f "$metrics" ] || fail "no metrics file in the textfile directory"
mode=$(stat -c '%a' "$metrics")
[ "$mode" = 644 ] || fail "the metrics file is mode $mode, not 644"
# The exporter runs as its own user (prometheus); any other user stands in for it.
setpriv --reuid=65534 --regid=65534 --clear-groups grep -q '^tally_run_success{job="billing"} 1$' "$metrics" ||
    fail "another user cannot read a successful run in the metrics file"
step "metrics file written by tally (mode $mode) and readable by the exporter"

# 4. The crontab line, its paths moved into the temporary root.
crontab="$here/tally.cron"
grep -Eq '^[[:space:]]*(CRON_TZ|TZ)=' "$crontab" && fail "tally.cron sets CRON_TZ or TZ, which Debian's cron ignores"
job=$(grep -Ev '^[[:space:]]*(#|$)' "$crontab" | grep -Ev '^[A-Za-z_][A-Za-z0-9_]*=')
[ "$(printf '%s\n' "$job" | wc -l)" -eq 1 ] || fail "tally.cron should hold one job line"
user=$(printf '%s\n' "$job" | awk '{ print $6 }')
[ "$user" = tally ] || fail "the job runs as $user, not tally"
command=$(printf '%s\n' "$job" | cut -d ' ' -f 7-)
case "$command" in
*%*) fail "the command holds %, which cron turns into a newline" ;;
esac
mkdir -p "$root/run/lock" "$root/etc/tally"
chmod 1777 "$root/run/lock"
: >"$root/etc/tally/tally.toml"
relocate() {
    sed -e "s#/usr/local/bin/tally#$tally_binary#g" \
        -e "s#/var/lib/tally#$root/var/lib/tally#g" \
        -e "s#/var/log/tally#$root/var/log/tally#g" \
        -e "s#/etc/tally#$root/etc/tally#g" \
        -e "s#/run/lock#$root/run/lock#g"
}
command=$(printf '%s\n' "$command" | relocate)
# Cron's environment: its own variables and those of the file, nothing else.
variables=$(grep -E '^[A-Za-z_][A-Za-z0-9_]*=' "$crontab" | relocate | tr '\n' ' ')
cron_job() {
    # shellcheck disable=SC2086 # the variables are NAME=value words without spaces
    as_tally env -i HOME=/var/lib/tally LOGNAME=tally $variables /bin/sh -c "$command" 2>&1
}

mail=$(cron_job) || fail "the cron job's shell failed"
[ -z "$mail" ] || fail "a successful night mailed: $mail"
[ -s "$root/var/log/tally/billing.log" ] || fail "the night's report is not in /var/log/tally/billing.log"
step "a successful night logs its report and mails nothing"

printf '[no_such_section]\n' >"$root/etc/tally/tally.toml"
mail=$(cron_job)
case "$mail" in
*"exit code 78"*) ;;
*) fail "a night with a bad configuration mailed: '$mail'" ;;
esac
[ "$(printf '%s\n' "$mail" | wc -l)" -eq 1 ] || fail "a failed night mailed more than one line: $mail"
: >"$root/etc/tally/tally.toml"
step "a failed night mails one line: $mail"

lock="$root/run/lock/tally-billing.lock"
# The previous night's run, still holding the lock: one process (setpriv, then sh,
# then sleep, by exec), so killing it releases the lock.
# shellcheck disable=SC2016 # $0 belongs to the inner shell
setpriv --reuid="$uid" --regid="$gid" --clear-groups \
    sh -c 'exec 9>>"$0" && flock 9 && exec sleep 60' "$lock" >/dev/null 2>&1 &
holder=$!
tries=0
while as_tally flock -n "$lock" true; do
    tries=$((tries + 1))
    [ "$tries" -lt 100 ] || fail "the stand-in for a running night never took the lock"
    sleep 0.1
done
mail=$(cron_job)
kill "$holder"
wait "$holder" 2>/dev/null || true
case "$mail" in
*"exit code 75"*) ;;
*) fail "a night whose previous run holds the lock mailed: '$mail'" ;;
esac
step "a night whose previous run still runs exits 75 at once: $mail"
step "all recipes work"
