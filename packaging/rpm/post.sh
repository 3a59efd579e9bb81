# %post = %systemd_post ufm-pkeyd.service, written out (cargo-generate-rpm expands no macros).
# EL9 (systemd 252) has systemd-update-helper; EL8 (systemd 239) uses systemctl. On first
# install, apply the preset: RHEL's default preset leaves third-party units disabled, so the
# administrator runs `systemctl enable --now ufm-pkeyd` once it is configured.
if [ "$1" -eq 1 ]; then
    if [ -x /usr/lib/systemd/systemd-update-helper ]; then
        /usr/lib/systemd/systemd-update-helper install-system-units ufm-pkeyd.service || :
    else
        systemctl --no-reload preset ufm-pkeyd.service >/dev/null 2>&1 || :
    fi
fi
exit 0
