# %postun = %systemd_postun_with_restart ufm-pkeyd.service, written out: on upgrade, restart the
# unit if it runs. EL9 marks it and systemd's own file trigger restarts it at the end of the
# transaction (after its daemon-reload); EL8 restarts it here.
if [ "$1" -ge 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper mark-restart-system-units ufm-pkeyd.service || :
    else
        systemctl try-restart ufm-pkeyd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
