# bash completion for ufm-pkeyd(8). Installed as
# /usr/share/bash-completion/completions/ufm-pkeyd; needs nothing from bash-completion itself.
# The flag lists follow `ufm-pkeyd <command> --help`; tests/docs_consistency.rs checks them.

_ufm_pkeyd() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev="" flag_word=$((COMP_CWORD - 1))
    # `--flag=value`: with '=' in COMP_WORDBREAKS the words are "--flag" "=" "value".
    if [[ $cur == "=" ]]; then
        cur=""
    elif ((COMP_CWORD >= 2)) && [[ ${COMP_WORDS[COMP_CWORD - 1]} == "=" ]]; then
        flag_word=$((COMP_CWORD - 2))
    fi
    ((flag_word > 0)) && prev=${COMP_WORDS[flag_word]}

    local common="--config --pcocc-dir --no-pcocc --json --debug --log-timestamps --help"
    local ufm_conn="--ufm-host --host --ufm-user --username --ufm-password --password
        --ufm-password-file --ufm-prompt-password --ufm-token-file --no-ssl-verify --ufm-ca-cert --http --ufm-timeout
        --ufm-proxy"
    local etcd_conn="--etcd-endpoints --etcd-host --etcd-port --etcd-protocol --etcd-api
        --etcd-ca-cert --etcd-cert-file --etcd-key-file --etcd-user --etcd-password
        --etcd-password-file --etcd-prompt-password --etcd-timeout --etcd-proxy"
    local sync_opts="--etcd-prefix --state-file --allow-mass-delete --max-deletes --state-key"
    local election="--leader-election --election-key"
    local ufm_ops="--list --get-pkey --create-pkey --delete-pkey --pkey --guids --membership
        --index0 --no-index0 --ip-over-ib --no-ip-over-ib --remove-guids --check"
    local etcd_ops="--list --check --prefix --get --put --value --ttl --delete"
    # Flags that take a value: the word after them is not a command.
    local with_value="--config --pcocc-dir --ufm-host --host --ufm-user --username --ufm-password
        --password --ufm-password-file --ufm-token-file --ufm-ca-cert --ufm-timeout --ufm-proxy
        --get-pkey --create-pkey --delete-pkey --pkey --guids --membership --etcd-endpoints
        --etcd-host --etcd-port --etcd-protocol --etcd-api --etcd-ca-cert --etcd-cert-file
        --etcd-key-file --etcd-user --etcd-password --etcd-password-file --etcd-timeout
        --etcd-proxy --etcd-prefix --state-file --metrics-file --poll-interval --resync-interval --max-deletes
        --election-key --state-key --election-ttl --prefix --get --put --value --ttl --delete
        --max-age"

    local cmd="" i word
    for ((i = 1; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ " ${with_value//$'\n'/ } " == *" $word "* ]]; then
            ((i++))
            [[ ${COMP_WORDS[i]} == "=" ]] && ((i++))
            continue
        fi
        case $word in
        monitor | sync | ufm | etcd | status | state | config)
            cmd=$word
            break
            ;;
        esac
    done

    case $prev in
    --config | --ufm-password-file | --ufm-token-file | --ufm-ca-cert | --etcd-ca-cert | \
        --etcd-cert-file | --etcd-key-file | --etcd-password-file | --state-file | --metrics-file)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        return
        ;;
    --pcocc-dir)
        compopt -o filenames 2>/dev/null
        mapfile -t COMPREPLY < <(compgen -d -- "$cur")
        return
        ;;
    --etcd-api)
        mapfile -t COMPREPLY < <(compgen -W "auto v2 v3" -- "$cur")
        return
        ;;
    --membership)
        mapfile -t COMPREPLY < <(compgen -W "full limited" -- "$cur")
        return
        ;;
    --confirm-deletions)
        mapfile -t COMPREPLY < <(compgen -W "all" -- "$cur")
        return
        ;;
    --etcd-protocol)
        mapfile -t COMPREPLY < <(compgen -W "http https" -- "$cur")
        return
        ;;
    --ufm-host | --host | --etcd-host | --etcd-endpoints)
        mapfile -t COMPREPLY < <(compgen -A hostname -- "$cur")
        return
        ;;
    --ufm-user | --username | --ufm-password | --password | --ufm-timeout | --ufm-proxy | \
        --get-pkey | --create-pkey | --delete-pkey | --pkey | --guids | --etcd-port | \
        --etcd-user | --etcd-password | --etcd-timeout | --etcd-proxy | --etcd-prefix | \
        --poll-interval | --resync-interval | --max-deletes | --election-key | --state-key | --election-ttl | \
        --max-age | \
        --prefix | --get | --put | --value | --ttl | --delete)
        COMPREPLY=()
        return
        ;;
    esac

    local opts
    case $cmd in
    "") opts="monitor sync ufm etcd status state config --help --version" ;;
    monitor)
        opts="$common $ufm_conn $etcd_conn $sync_opts $election --metrics-file --poll-interval
            --resync-interval --election-ttl --dry-run"
        ;;
    sync) opts="$common $ufm_conn $etcd_conn $sync_opts --metrics-file --dry-run" ;;
    ufm) opts="$common $ufm_conn $ufm_ops" ;;
    etcd) opts="$common $etcd_conn $etcd_ops" ;;
    status) opts="$common --state-file --max-age" ;;
    state)
        opts="$common $ufm_conn $etcd_conn --etcd-prefix --state-file --state-key $election
            --adopt --reset --confirm-deletions"
        ;;
    config)
        opts="$common $ufm_conn $etcd_conn $sync_opts $election --metrics-file --poll-interval
            --resync-interval --election-ttl --check"
        ;;
    esac
    if [[ -n $cmd && $cur != -* ]]; then
        COMPREPLY=()
        return
    fi
    mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
}

complete -F _ufm_pkeyd ufm-pkeyd
