function __fwd_should_offer_completions_for_flags_or_options -a expected_commands
    set -l non_repeating_flags_or_options $argv[2..]
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __fwd_parse_tokens
    test "$commands" = "$expected_commands"; and return $non_repeating_flags_or_options_absent
end

function __fwd_should_offer_completions_for_positional -a expected_commands positional_index_comparison expected_positional_index
    set -l non_repeating_flags_or_options
    set -l non_repeating_flags_or_options_absent 0
    set -l positional_index 0
    set -l commands
    __fwd_parse_tokens
    test "$commands" = "$expected_commands" -a \( "$positional_index" "$positional_index_comparison" "$expected_positional_index" \)
end

function __fwd_parse_tokens -S
    set -l unparsed_tokens (__fwd_tokens -pc)
    switch $unparsed_tokens[1]
    case 'fwd'
        __fwd_parse_subcommand 0 'version' 'h/help'
        switch $unparsed_tokens[1]
        case 'up'
            __fwd_parse_subcommand -r 1 'all' 'timeout=' 'q/quiet' 'wait' 'version' 'h/help'
        case 'down'
            __fwd_parse_subcommand -r 1 'all' 'timeout=' 'q/quiet' 'version' 'h/help'
        case 'status'
            __fwd_parse_subcommand -r 1 'json' 'w/watch' 'version' 'h/help'
        case 'top'
            __fwd_parse_subcommand 0 'version' 'h/help'
        case 'logs'
            __fwd_parse_subcommand 1 'f/follow' 'lines=' 'since=' 'json' 'version' 'h/help'
        case 'check'
            __fwd_parse_subcommand -r 1 'json' 'version' 'h/help'
        case 'list'
            __fwd_parse_subcommand 0 'json' 'version' 'h/help'
        case 'show'
            __fwd_parse_subcommand 1 'json' 'version' 'h/help'
        case 'pac'
            __fwd_parse_subcommand -r 1 'version' 'h/help'
        case 'add'
            __fwd_parse_subcommand 1 'host=' 'L=+' 'R=+' 'D=+' 'probe=' 'probe-target=' 'public' 'template=' 'target=' 'port=' 'target-port=' 'passive=' 'version' 'h/help'
        case 'rm'
            __fwd_parse_subcommand 1 'version' 'h/help'
        case 'reload'
            __fwd_parse_subcommand 0 'q/quiet' 'version' 'h/help'
        case 'run'
            __fwd_parse_subcommand -r 1 'version' 'h/help'
        case 'daemon'
            __fwd_parse_subcommand 0 'stop' 'version' 'h/help'
        case 'ssh'
            __fwd_parse_subcommand -r 2 'version' 'h/help'
        case 'demo'
            __fwd_parse_subcommand 0 'keep' 'version' 'h/help'
        case 'reconnect'
            __fwd_parse_subcommand -r 1 'all' 'timeout=' 'q/quiet' 'version' 'h/help'
        case 'config'
            __fwd_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'print'
                __fwd_parse_subcommand 0 'version' 'h/help'
            case 'install'
                __fwd_parse_subcommand 0 'version' 'h/help'
            case 'uninstall'
                __fwd_parse_subcommand 0 'version' 'h/help'
            case 'path'
                __fwd_parse_subcommand 0 'all' 'version' 'h/help'
            end
        case 'templates'
            __fwd_parse_subcommand 0 'json' 'version' 'h/help'
        case 'edit'
            __fwd_parse_subcommand 0 'version' 'h/help'
        case 'doctor'
            __fwd_parse_subcommand 0 'json' 'v/verbose' 'version' 'h/help'
        case 'service'
            __fwd_parse_subcommand 0 'version' 'h/help'
            switch $unparsed_tokens[1]
            case 'install'
                __fwd_parse_subcommand 0 'manager=' 'user' 'version' 'h/help'
            case 'uninstall'
                __fwd_parse_subcommand 0 'manager=' 'version' 'h/help'
            case 'status'
                __fwd_parse_subcommand 0 'manager=' 'json' 'version' 'h/help'
            case 'print'
                __fwd_parse_subcommand 0 'manager=' 'version' 'h/help'
            end
        case 'metrics'
            __fwd_parse_subcommand 0 'version' 'h/help'
        case 'help'
            __fwd_parse_subcommand -r 1 'version'
        end
    end
end

function __fwd_tokens
    if test (string split -m 1 -f 1 -- . "$FISH_VERSION") -gt 3
        commandline --tokens-raw $argv
    else
        commandline -o $argv
    end
end

function __fwd_parse_subcommand -S -a positional_count
    argparse -s r -- $argv
    set -l option_specs $argv[2..]
    set -l is_repeating_positional $_flag_r
    set -el _flag_r
    set -a commands $unparsed_tokens[1]
    set positional_index 0
    while true
        set -e unparsed_tokens[1]
        argparse -sn "$commands" $option_specs -- $unparsed_tokens 2> /dev/null
        set unparsed_tokens $argv
        set positional_index (math $positional_index + 1)
        for non_repeating_flag_or_option in $non_repeating_flags_or_options
            if set -ql "_flag_$(string replace -a - _ -- $non_repeating_flag_or_option)"
                set non_repeating_flags_or_options_absent 1
                break
            end
        end
        test (count $unparsed_tokens) -eq 0 -o \( -z "$is_repeating_positional" -a "$positional_index" -gt "$positional_count" \) && break
    end
end

function __fwd_complete_directories
    set -l token (commandline -t)
    string match -- '*/' $token
    set -l subdirs $token*/
    printf %s\n $subdirs
end

function __fwd_custom_completion
    set -x SAP_SHELL fish
    set -x SAP_SHELL_VERSION $FISH_VERSION
    set -l tokens (__fwd_tokens -p)
    if test -z "$(__fwd_tokens -t)"
        set -l index (count (__fwd_tokens -pc))
        set tokens $tokens[..$index] \'\' $tokens[(math $index + 1)..]
    end
    command $tokens[1] $argv $tokens
end

complete -c 'fwd' -f
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'up' -d 'Bring tunnels or groups up and wait until each passes its probe or its first attempt fails.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'down' -d 'Take tunnels or groups down.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'status' -d 'Show each tunnel\'s state, forwards, uptime, restarts, probe latency and last error.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'top' -d 'A live full-screen view of every tunnel: state, uptime, probe latency with recent probes, restarts.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'logs' -d 'Show the event log (state changes, restarts with reasons) and ssh\'s own messages.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'check' -d 'Probe tunnels now and print the result; exits non-zero when one is not up.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'list' -d 'List configured tunnels with their host, forwards and probe.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'show' -d 'Show a tunnel\'s resolved forwards and the exact ssh commands fwd would run.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'pac' -d 'Print a proxy auto-config (PAC) script that sends each tunnel\'s domains through its SOCKS port.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'add' -d 'Add a tunnel to the config, from forward specs or a preset.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'rm' -d 'Remove a tunnel\'s table from the config; a running tunnel is taken down first.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'reload' -d 'Apply the config file to the running supervisor now.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'run' -d 'Supervise the named tunnels in the foreground, without a daemon; Ctrl-C takes them down.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'daemon' -d 'Run the supervisor in the foreground (for systemd or launchd).'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'ssh' -d 'Run ssh to a host with fwd\'s config, riding its master (agent/X11 forwarding as the host asks).'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'demo' -d 'Show fwd working end to end against a private sshd on 127.0.0.1 — no server of your own needed.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'reconnect' -d 'Check the masters of tunnels now and restart those whose network path is gone.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'config' -d 'Show or install the ssh_config fragment fwd generates.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'templates' -d 'List the tunnel presets for `fwd add NAME --template PRESET`.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'edit' -d 'Edit the config in $EDITOR; a version that does not parse is never saved.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'doctor' -d 'Check ssh, the config, the Include line, permissions, sockets, ports and the supervisor.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'service' -d 'Run `fwd daemon` at login: a systemd user unit (Linux) or a launchd agent (macOS).'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'metrics' -d 'Print the metrics in the Prometheus text format.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd" -eq 1' -fa 'help' -d 'Show subcommand help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd up" -ge 1' -fka '(__fwd_custom_completion ---completion up -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" all' -l 'all' -d 'Bring up every configured tunnel.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" timeout' -l 'timeout' -d 'Seconds to wait for every tunnel to pass its probe.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" q quiet' -l 'quiet' -s 'q' -d 'Print nothing on success.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" wait' -l 'wait' -d 'Wait through retries until every tunnel is up (or --timeout passes), instead of returning after a failed attempt.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd up" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd down" -ge 1' -fka '(__fwd_custom_completion ---completion down -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd down" all' -l 'all' -d 'Take every tunnel down.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd down" timeout' -l 'timeout' -d 'Seconds to wait.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd down" q quiet' -l 'quiet' -s 'q' -d 'Print nothing on success.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd down" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd down" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd status" -ge 1' -fka '(__fwd_custom_completion ---completion status -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd status" json' -l 'json' -d 'Print a JSON array.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd status" w watch' -l 'watch' -s 'w' -d 'Redraw the table every second until Ctrl-C (on a terminal only).'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd status" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd top" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd top" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd logs" -eq 1' -fka '(__fwd_custom_completion ---completion logs -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" f follow' -l 'follow' -s 'f' -d 'Keep printing new events until interrupted.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" lines' -l 'lines' -d 'How many lines to show first, at most: the latest events, and with NAME the ssh lines about its forwards.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" since' -l 'since' -d 'Only events since then: a duration ago (30s, 10m, 2h, 1d) or a time (2026-12-08T10:00, UTC unless it says).' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" json' -l 'json' -d 'Print the events as a JSON array (without ssh\'s messages).'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd logs" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd check" -ge 1' -fka '(__fwd_custom_completion ---completion check -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd check" json' -l 'json' -d 'Print JSON.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd check" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd check" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd list" json' -l 'json' -d 'Print a JSON array of tunnels.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd list" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd list" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd show" -eq 1' -fka '(__fwd_custom_completion ---completion show -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd show" json' -l 'json' -d 'Print JSON.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd show" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd show" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd pac" -ge 1' -fka '(__fwd_custom_completion ---completion pac -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd pac" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd pac" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd add" -eq 1' -fka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" host' -l 'host' -d 'A [hosts] name, an ssh alias or user@host[:port].' -rfka '(__fwd_custom_completion ---completion add -- --host (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add"' -s 'L' -d 'A local forward, as for ssh -L; ports may be ranges (60000-60009:ftp.lan:60000-60009).' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add"' -s 'R' -d 'A remote forward, as for ssh -R; ports may be ranges.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add"' -s 'D' -d 'A dynamic (SOCKS) forward, as for ssh -D.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" probe' -l 'probe' -d 'How each forward is checked: tcp, banner, http, socks, remote, none, postgres, mysql, ssh, tls, smtp, imap, pop3, ftp, rdp, vnc, redis (default: by forward type; see the list above).' -rfka 'tcp banner http socks remote none postgres mysql ssh tls smtp imap pop3 ftp rdp vnc redis'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" probe-target' -l 'probe-target' -d 'For a dynamic forward: HOST:PORT (as the server sees it) the probe CONNECTs to through the proxy.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" public' -l 'public' -d 'Allow binding addresses other than loopback.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" template' -l 'template' -d 'A preset from `fwd templates` instead of -L/-R/-D.' -rfka '(__fwd_custom_completion ---completion add -- --template (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" target' -l 'target' -d 'With --template: the host the forward reaches (default: the preset\'s).' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" port' -l 'port' -d 'With --template: the listening port (default: the preset\'s).' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" target-port' -l 'target-port' -d 'With --template: the target\'s port (default: the preset\'s).' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" passive' -l 'passive' -d 'With --template ftp: the server\'s fixed passive port range, forwarded port for port.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd add" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd rm" -eq 1' -fka '(__fwd_custom_completion ---completion rm -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd rm" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd rm" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reload" q quiet' -l 'quiet' -s 'q' -d 'Print nothing on success.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reload" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reload" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd run" -ge 1' -fka '(__fwd_custom_completion ---completion run -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd run" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd run" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd daemon" stop' -l 'stop' -d 'Ask the running supervisor to stop, and wait until it has.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd daemon" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd daemon" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd ssh" -eq 1' -fka '(__fwd_custom_completion ---completion ssh -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd ssh" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd ssh" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd demo" keep' -l 'keep' -d 'Keep the tunnels up until Ctrl-C.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd demo" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd demo" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd reconnect" -ge 1' -fka '(__fwd_custom_completion ---completion reconnect -- positional@0 (count (__fwd_tokens -pc)) (__fwd_tokens -tC))'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reconnect" all' -l 'all' -d 'Check every master.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reconnect" timeout' -l 'timeout' -d 'Seconds to wait for restarted tunnels to be up again.' -rfka ''
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reconnect" q quiet' -l 'quiet' -s 'q' -d 'Print nothing on success.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reconnect" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd reconnect" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd config" -eq 1' -fa 'print' -d 'Print the ssh_config fragment: a Host block per fwd host and per tunnel.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd config" -eq 1' -fa 'install' -d 'Write the fragment and add one Include line at the top of ~/.ssh/config.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd config" -eq 1' -fa 'uninstall' -d 'Remove the Include line that `fwd config install` added.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd config" -eq 1' -fa 'path' -d 'Print where fwd\'s files are.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config print" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config print" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config install" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config install" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config uninstall" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config uninstall" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config path" all' -l 'all' -d 'Also print the state directory, fragment and ssh_config paths.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config path" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd config path" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd templates" json' -l 'json' -d 'Print JSON.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd templates" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd templates" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd edit" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd edit" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd doctor" json' -l 'json' -d 'Print JSON: ok, and findings with check, status, message and fix.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd doctor" v verbose' -l 'verbose' -s 'v' -d 'Also print the checks that pass.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd doctor" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd doctor" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd service" -eq 1' -fa 'install' -d 'Write the unit for this user (mode 0644) and say how to enable it.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd service" -eq 1' -fa 'uninstall' -d 'Remove the unit that `fwd service install` wrote.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd service" -eq 1' -fa 'status' -d 'Say whether the unit is installed and current, and whether a supervisor runs.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_positional "fwd service" -eq 1' -fa 'print' -d 'Print the unit `fwd service install` would write.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service install" manager' -l 'manager' -d 'systemd or launchd (default: this system\'s).' -rfka 'systemd launchd'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service install" user' -l 'user' -d 'Install a per-user unit: the default, and the only kind fwd installs.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service install" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service install" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service uninstall" manager' -l 'manager' -d 'systemd or launchd (default: this system\'s).' -rfka 'systemd launchd'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service uninstall" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service uninstall" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service status" manager' -l 'manager' -d 'systemd or launchd (default: this system\'s).' -rfka 'systemd launchd'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service status" json' -l 'json' -d 'Print JSON: manager, path, installed, current, supervisor_pid, autostart.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service status" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service status" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service print" manager' -l 'manager' -d 'systemd or launchd (default: this system\'s).' -rfka 'systemd launchd'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service print" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd service print" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd metrics" version' -l 'version' -d 'Show the version.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd metrics" h help' -s 'h' -l 'help' -d 'Show help information.'
complete -c 'fwd' -n '__fwd_should_offer_completions_for_flags_or_options "fwd help" version' -l 'version' -d 'Show the version.'
