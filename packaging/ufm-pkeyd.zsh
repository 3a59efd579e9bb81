#compdef ufm-pkeyd
# zsh completion for ufm-pkeyd(8). Installed as /usr/share/zsh/site-functions/_ufm-pkeyd.
# The flag groups are those of ufm-pkeyd.bash and follow `ufm-pkeyd <command> --help`;
# tests/docs_consistency.rs checks both (flags per command, and how each value completes).

_ufm-pkeyd() {
    local -a common ufm_conn etcd_conn sync_opts election ufm_ops etcd_ops specs
    common=(
        '--config=[read this configuration file]:configuration file:_files'
        '--pcocc-dir=[read pcocc'\''s files from DIR]:pcocc directory:_files -/'
        '--no-pcocc[ignore pcocc'\''s configuration files]'
        '--json[print results as JSON]'
        '--debug[log debug detail to stderr]'
        '--log-timestamps[start each log line with its UTC time]'
        '(- *)--help[print the options]'
    )
    ufm_conn=(
        '(--host)--ufm-host=[UFM host, host:port or URL]:UFM host:_hosts'
        '(--ufm-host)--host=[UFM host, host:port or URL]:UFM host:_hosts'
        '(--username)--ufm-user=[UFM user]:UFM user: '
        '(--ufm-user)--username=[UFM user]:UFM user: '
        '(--password)--ufm-password=[UFM password (visible in ps)]:UFM password: '
        '(--ufm-password)--password=[UFM password (visible in ps)]:UFM password: '
        '--ufm-password-file=[read the UFM password from FILE]:password file:_files'
        '--ufm-prompt-password[ask for the UFM password on the terminal]'
        '--ufm-token-file=[read a UFM access token from FILE]:token file:_files'
        '--no-ssl-verify[do not verify UFM'\''s TLS certificate]'
        '--ufm-ca-cert=[verify UFM against the CA certificates in FILE]:CA file:_files'
        '--http[talk plain HTTP to UFM]'
        '--ufm-timeout=[seconds to wait for UFM]:seconds: '
        '--ufm-proxy=[HTTP proxy for UFM]:proxy URL: '
    )
    etcd_conn=(
        '--etcd-endpoints=[comma-separated etcd endpoints]:etcd endpoints:_hosts'
        '--etcd-host=[etcd host]:etcd host:_hosts'
        '--etcd-port=[etcd client port]:port: '
        '--etcd-protocol=[scheme for endpoints without one]:scheme:(http https)'
        '--etcd-api=[etcd API and keyspace]:API:(auto v2 v3)'
        '--etcd-ca-cert=[verify etcd against the CA certificates in FILE]:CA file:_files'
        '--etcd-cert-file=[client certificate for etcd]:certificate file:_files'
        '--etcd-key-file=[client key for etcd]:key file:_files'
        '--etcd-user=[etcd user]:etcd user: '
        '--etcd-password=[etcd password (visible in ps)]:etcd password: '
        '--etcd-password-file=[read the etcd password from FILE]:password file:_files'
        '--etcd-prompt-password[ask for the etcd password on the terminal]'
        '--etcd-timeout=[seconds to wait for etcd]:seconds: '
        '--etcd-proxy=[HTTP proxy for etcd]:proxy URL: '
    )
    sync_opts=(
        '--etcd-prefix=[etcd prefix holding one key per partition]:prefix: '
        '--state-file=[record owned partitions in FILE]:state file:_files'
        '--allow-mass-delete[let a pass delete more than the guard permits]'
        '--max-deletes=[deletions a pass may make unconfirmed]:count: '
        '--state-key=[etcd key recording owned partitions]:key: '
    )
    election=(
        '--leader-election[only the elected instance changes UFM]'
        '--election-key=[etcd key of the leader election]:key: '
    )
    ufm_ops=(
        '--list[list PKeys]'
        '--get-pkey=[show one PKey]:PKey: '
        '--create-pkey=[create a PKey]:PKey: '
        '--delete-pkey=[delete a PKey]:PKey: '
        '--pkey=[PKey for --guids]:PKey: '
        '--guids=[comma-separated GUIDs]:GUIDs: '
        '--membership=[membership of added GUIDs]:membership:(full limited)'
        '(--no-index0)--index0[put the PKey at index 0]'
        '(--index0)--no-index0[do not put the PKey at index 0]'
        '(--no-ip-over-ib)--ip-over-ib[enable IP over InfiniBand]'
        '(--ip-over-ib)--no-ip-over-ib[disable IP over InfiniBand]'
        '--remove-guids[remove --guids from --pkey]'
        '--check[check the connection and credentials]'
    )
    etcd_ops=(
        '--list[list keys]'
        '--check[check the connection and credentials]'
        '--prefix=[with --list: only keys under PREFIX]:prefix: '
        '--get=[print the value of KEY]:key: '
        '--put=[set KEY to --value]:key: '
        '--value=[value for --put]:value: '
        '--ttl=[with --put: expire after SECONDS]:seconds: '
        '--delete=[delete KEY]:key: '
    )
    local metrics='--metrics-file=[write Prometheus metrics to FILE]:metrics file:_files'
    local poll='--poll-interval=[seconds between checks for changes made by hand in UFM]:seconds: '
    local resync='--resync-interval=[seconds between full passes at the longest]:seconds: '
    local -a record=(
        '--etcd-prefix=[etcd prefix holding one key per partition]:prefix: '
        '--state-file=[record owned partitions in FILE]:state file:_files'
        '--state-key=[etcd key recording owned partitions]:key: '
        '(--reset)--adopt[bind the ownership record to this etcd and UFM, keeping what it owns]'
        '(--adopt)--reset[empty the ownership record and bind it to this etcd and UFM]'
        '--confirm-deletions=[confirm deletions the guard refused]:PKeys (all, or 0x1000-0x17cf,0x2000): '
    )
    local ttl='--election-ttl=[seconds a leader'"'"'s claim lives without refresh]:seconds: '
    local dry='--dry-run[print the plan and change nothing]'
    local max_age='--max-age=[CRITICAL when the last check is older than SECONDS]:seconds: '
    local status_state='--state-file=[read the status file beside this state FILE]:state file:_files'

    # The sub-command: the first word that is not an option or the value of one.
    local cmd="" i word spec
    local -a with_value
    for spec in $common $ufm_conn $etcd_conn $sync_opts $election $ufm_ops $etcd_ops \
        $metrics $poll $resync $ttl $max_age; do
        [[ $spec == *=\[* ]] && with_value+=(${${spec#\(*\)}%%=*})
    done
    for ((i = 2; i < CURRENT; i++)); do
        word=${words[i]}
        if ((${with_value[(Ie)$word]})); then
            ((i++))
            continue
        fi
        case $word in
        monitor | sync | ufm | etcd | status | state | config)
            cmd=$word
            break
            ;;
        esac
    done

    case $cmd in
    "")
        _arguments -s \
            '(- *)--help[print the sub-commands]' \
            '(- *)--version[print the version]' \
            '1:command:_ufm-pkeyd_commands'
        return
        ;;
    monitor) specs=($common $ufm_conn $etcd_conn $sync_opts $election $metrics $poll $resync $ttl $dry) ;;
    sync) specs=($common $ufm_conn $etcd_conn $sync_opts $metrics $dry) ;;
    ufm) specs=($common $ufm_conn $ufm_ops) ;;
    etcd) specs=($common $etcd_conn $etcd_ops) ;;
    status) specs=($common $status_state $max_age) ;;
    state) specs=($common $ufm_conn $etcd_conn $record $election) ;;
    config) specs=($common $ufm_conn $etcd_conn $sync_opts $election $metrics $poll $resync $ttl
        '--check[check that the configuration loads, without connecting]') ;;
    esac
    _arguments -s '1:command:(monitor sync ufm etcd status state config)' $specs
}

_ufm-pkeyd_commands() {
    local -a commands=(
        'monitor:the daemon: keep UFM in step with etcd'
        'sync:run one sync pass (with --dry-run: print the plan)'
        'ufm:one-shot UFM PKey operations'
        'etcd:one-shot etcd operations'
        'status:monitoring check from the status file (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
        'state:show, adopt or reset the ownership record, confirm refused deletions'
        'config:print the effective configuration'
    )
    _describe -t commands command commands
}

_ufm-pkeyd "$@"
