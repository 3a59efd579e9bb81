# fish completion for ufm-pkeyd(8). Installed as
# /usr/share/fish/vendor_completions.d/ufm-pkeyd.fish.
# The flag groups are those of ufm-pkeyd.bash and follow `ufm-pkeyd <command> --help`;
# tests/docs_consistency.rs checks them with fish's own `complete -C`.

set -l commands monitor sync ufm etcd status state config
complete -c ufm-pkeyd -f
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a monitor -d 'the daemon: keep UFM in step with etcd'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a sync -d 'run one sync pass (with --dry-run: print the plan)'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a ufm -d 'one-shot UFM PKey operations'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a etcd -d 'one-shot etcd operations'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a status -d 'monitoring check from the status file (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a state -d 'show, adopt or reset the ownership record, confirm refused deletions'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -a config -d 'print the effective configuration'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -l help -d 'print the sub-commands'
complete -c ufm-pkeyd -n "not __fish_seen_subcommand_from $commands" -l version -d 'print the version'

# _ufm_pkeyd_flag COMMANDS FLAG KIND DESCRIPTION: FLAG for each of COMMANDS (space-separated);
# KIND: - (no value), file, dir, host, none (a free value), or the words a value may take.
function _ufm_pkeyd_flag
    set -l when "__fish_seen_subcommand_from $argv[1]"
    switch $argv[3]
        case -
            complete -c ufm-pkeyd -n $when -l $argv[2] -d $argv[4]
        case file
            complete -c ufm-pkeyd -n $when -l $argv[2] -r -F -d $argv[4]
        case dir
            complete -c ufm-pkeyd -n $when -l $argv[2] -x -a '(__fish_complete_directories (commandline -ct))' -d $argv[4]
        case host
            complete -c ufm-pkeyd -n $when -l $argv[2] -x -a '(__fish_print_hostnames)' -d $argv[4]
        case none
            complete -c ufm-pkeyd -n $when -l $argv[2] -x -d $argv[4]
        case '*'
            complete -c ufm-pkeyd -n $when -l $argv[2] -x -a $argv[3] -d $argv[4]
    end
end

set -l all 'monitor sync ufm etcd status state config'
set -l ufm_conn 'monitor sync ufm state config'
set -l etcd_conn 'monitor sync etcd state config'
set -l sync_opts 'monitor sync config'
set -l record 'monitor sync state config'
set -l election 'monitor state config'

# General options.
_ufm_pkeyd_flag $all config file 'read this configuration file'
_ufm_pkeyd_flag $all pcocc-dir dir "read pcocc's files from DIR"
_ufm_pkeyd_flag $all no-pcocc - "ignore pcocc's configuration files"
_ufm_pkeyd_flag $all json - 'print results as JSON'
_ufm_pkeyd_flag $all debug - 'log debug detail to stderr'
_ufm_pkeyd_flag $all log-timestamps - 'start each log line with its UTC time'
_ufm_pkeyd_flag $all help - 'print the options'
# UFM connection.
_ufm_pkeyd_flag $ufm_conn ufm-host host 'UFM host, host:port or URL'
_ufm_pkeyd_flag $ufm_conn host host 'UFM host, host:port or URL'
_ufm_pkeyd_flag $ufm_conn ufm-user none 'UFM user'
_ufm_pkeyd_flag $ufm_conn username none 'UFM user'
_ufm_pkeyd_flag $ufm_conn ufm-password none 'UFM password (visible in ps)'
_ufm_pkeyd_flag $ufm_conn password none 'UFM password (visible in ps)'
_ufm_pkeyd_flag $ufm_conn ufm-password-file file 'read the UFM password from FILE'
_ufm_pkeyd_flag $ufm_conn ufm-prompt-password - 'ask for the UFM password on the terminal'
_ufm_pkeyd_flag $ufm_conn ufm-token-file file 'read a UFM access token from FILE'
_ufm_pkeyd_flag $ufm_conn no-ssl-verify - "do not verify UFM's TLS certificate"
_ufm_pkeyd_flag $ufm_conn ufm-ca-cert file 'verify UFM against the CA certificates in FILE'
_ufm_pkeyd_flag $ufm_conn http - 'talk plain HTTP to UFM'
_ufm_pkeyd_flag $ufm_conn ufm-timeout none 'seconds to wait for UFM'
_ufm_pkeyd_flag $ufm_conn ufm-proxy none 'HTTP proxy for UFM'
# etcd connection.
_ufm_pkeyd_flag $etcd_conn etcd-endpoints host 'comma-separated etcd endpoints'
_ufm_pkeyd_flag $etcd_conn etcd-host host 'etcd host'
_ufm_pkeyd_flag $etcd_conn etcd-port none 'etcd client port'
_ufm_pkeyd_flag $etcd_conn etcd-protocol 'http https' 'scheme for endpoints without one'
_ufm_pkeyd_flag $etcd_conn etcd-api 'auto v2 v3' 'etcd API and keyspace'
_ufm_pkeyd_flag $etcd_conn etcd-ca-cert file 'verify etcd against the CA certificates in FILE'
_ufm_pkeyd_flag $etcd_conn etcd-cert-file file 'client certificate for etcd'
_ufm_pkeyd_flag $etcd_conn etcd-key-file file 'client key for etcd'
_ufm_pkeyd_flag $etcd_conn etcd-user none 'etcd user'
_ufm_pkeyd_flag $etcd_conn etcd-password none 'etcd password (visible in ps)'
_ufm_pkeyd_flag $etcd_conn etcd-password-file file 'read the etcd password from FILE'
_ufm_pkeyd_flag $etcd_conn etcd-prompt-password - 'ask for the etcd password on the terminal'
_ufm_pkeyd_flag $etcd_conn etcd-timeout none 'seconds to wait for etcd'
_ufm_pkeyd_flag $etcd_conn etcd-proxy none 'HTTP proxy for etcd'
# Sync options.
_ufm_pkeyd_flag $record etcd-prefix none 'etcd prefix holding one key per partition'
_ufm_pkeyd_flag 'monitor sync status state config' state-file file 'record owned partitions in FILE'
_ufm_pkeyd_flag $sync_opts allow-mass-delete - 'let a pass delete more than the guard permits'
_ufm_pkeyd_flag $sync_opts max-deletes none 'deletions a pass may make unconfirmed'
_ufm_pkeyd_flag $record state-key none 'etcd key recording owned partitions'
_ufm_pkeyd_flag $election leader-election - 'only the elected instance changes UFM'
_ufm_pkeyd_flag $election election-key none 'etcd key of the leader election'
_ufm_pkeyd_flag 'monitor sync config' metrics-file file 'write Prometheus metrics to FILE'
_ufm_pkeyd_flag status max-age none 'CRITICAL when the last check is older than SECONDS'
_ufm_pkeyd_flag 'monitor config' poll-interval none 'seconds between checks for changes made by hand in UFM'
_ufm_pkeyd_flag 'monitor config' resync-interval none 'seconds between full passes at the longest'
_ufm_pkeyd_flag 'monitor config' election-ttl none 'seconds a leader'\''s claim lives without refresh'
_ufm_pkeyd_flag 'monitor sync' dry-run - 'print the plan and change nothing'
_ufm_pkeyd_flag state adopt - 'bind the ownership record to this etcd and UFM, keeping what it owns'
_ufm_pkeyd_flag state reset - 'empty the ownership record and bind it to this etcd and UFM'
_ufm_pkeyd_flag state confirm-deletions none 'confirm deletions the guard refused: all, or PKeys and ranges'
# UFM operations (ufm) and etcd operations (etcd).
_ufm_pkeyd_flag 'ufm etcd' list - 'list PKeys (ufm) or keys (etcd)'
_ufm_pkeyd_flag 'ufm etcd' check - 'check the connection and credentials'
_ufm_pkeyd_flag config check - 'check that the configuration loads, without connecting'
_ufm_pkeyd_flag ufm get-pkey none 'show one PKey'
_ufm_pkeyd_flag ufm create-pkey none 'create a PKey'
_ufm_pkeyd_flag ufm delete-pkey none 'delete a PKey'
_ufm_pkeyd_flag ufm pkey none 'PKey for --guids'
_ufm_pkeyd_flag ufm guids none 'comma-separated GUIDs'
_ufm_pkeyd_flag ufm membership 'full limited' 'membership of added GUIDs'
_ufm_pkeyd_flag ufm index0 - 'put the PKey at index 0'
_ufm_pkeyd_flag ufm no-index0 - 'do not put the PKey at index 0'
_ufm_pkeyd_flag ufm ip-over-ib - 'enable IP over InfiniBand'
_ufm_pkeyd_flag ufm no-ip-over-ib - 'disable IP over InfiniBand'
_ufm_pkeyd_flag ufm remove-guids - 'remove --guids from --pkey'
_ufm_pkeyd_flag etcd prefix none 'with --list: only keys under PREFIX'
_ufm_pkeyd_flag etcd get none 'print the value of KEY'
_ufm_pkeyd_flag etcd put none 'set KEY to --value'
_ufm_pkeyd_flag etcd value none 'value for --put'
_ufm_pkeyd_flag etcd ttl none 'with --put: expire after SECONDS'
_ufm_pkeyd_flag etcd delete none 'delete KEY'
functions -e _ufm_pkeyd_flag
