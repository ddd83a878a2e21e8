#!/bin/sh
# Inside the container: what systemd says about holdd.service (see run.py).
R=/out/result
for i in $(seq 1 90); do systemctl is-active -q holdd && break; sleep 1; done
echo "active after ${i}s" >> $R
for i in $(seq 1 60); do [ -e /out/held ] && break; sleep 1; done
systemctl show holdd -p Type -p ActiveState -p SubState -p NRestarts -p StatusText -p WatchdogUSec >> $R
systemctl reload holdd; echo "reload rc=$?" >> $R
systemctl show holdd -p ActiveState -p StatusText >> $R
ls -la /var/lib/private/holdd >> $R 2>&1
systemctl stop holdd; echo "stop rc=$?" >> $R
systemctl show holdd -p ExecMainStatus -p Result >> $R
journalctl -u holdd -o cat --no-pager > /out/journal.txt 2>&1
systemctl poweroff
