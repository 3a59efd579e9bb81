# %preun = %systemd_preun ufm-pkeyd.service, written out: on removal (not upgrade), disable and
# stop the unit.
if [ "$1" -eq 0 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper remove-system-units ufm-pkeyd.service || :
    else
        systemctl --no-reload disable --now ufm-pkeyd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
