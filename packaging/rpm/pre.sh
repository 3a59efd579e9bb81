# %pre: the system user and group of ufm-pkeyd.service, before the files are laid down so that
# /etc/ufm-pkeyd/ufm-pkeyd.yaml gets its group (the form of Fedora's %sysusers_create_compat).
getent group ufm-pkeyd >/dev/null || groupadd -r ufm-pkeyd
getent passwd ufm-pkeyd >/dev/null ||
    useradd -r -g ufm-pkeyd -d /var/lib/ufm-pkeyd -s /sbin/nologin -c "ufm-pkeyd daemon" ufm-pkeyd
exit 0
