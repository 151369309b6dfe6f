import ArgumentParser
import Foundation
import FwdCore

/// Candidates for TAB. argument-parser runs these inside the binary at every TAB (`fwd ---completion …`), so
/// they only read: the config, the user's ssh_config for host aliases, and (for `down`) a read-only peek at the
/// state database. No logging, no ssh, nothing written. A missing or broken config gives no candidates rather
/// than an error on the user's command line.
enum Completions {
    /// Tunnel names, without those already on the command line.
    static let tunnels = CompletionKind.custom { words, index, _ in
        silenceErrors()
        return unused(names(groups: false), words: words, index: index)
    }

    /// Tunnel and group names, for commands that take either.
    static let tunnelsAndGroups = CompletionKind.custom { words, index, _ in
        silenceErrors()
        return unused(names(groups: true), words: words, index: index)
    }

    /// For `fwd down`: the tunnels (and groups with a member) that are not down, when the state database says
    /// so; otherwise every name. The database is only peeked at, read-only, never created or waited on.
    static let tunnelsToTakeDown = CompletionKind.custom { words, index, _ in
        silenceErrors()
        let paths = FwdPaths.fromEnvironment()
        guard let config = try? ConfigLoader.load(path: paths.config) else { return [] }
        let all = config.tunnels.map(\.name) + config.groups.map(\.name)
        guard let states = Store.peekStates(path: paths.database) else { return unused(all, words: words, index: index) }
        let running = Set(states.filter { $0.value != .down }.keys)
        let preferred = config.tunnels.map(\.name).filter(running.contains)
            + config.groups.filter { !running.isDisjoint(with: $0.members) }.map(\.name)
        return unused(preferred.isEmpty ? all : preferred, words: words, index: index)
    }

    /// Preset names for `--template`.
    static let presets = CompletionKind.custom { _, _, _ in
        silenceErrors()
        guard let dir = try? Presets.directory(executable: Executable.path) else { return [] }
        return Presets.all(in: dir).map(\.name)
    }

    /// `[hosts]` names, then the literal `Host` aliases of the user's ssh_config (and the files it includes).
    static let hosts = CompletionKind.custom { _, _, _ in
        silenceErrors()
        let paths = FwdPaths.fromEnvironment()
        let configured = ((try? ConfigLoader.load(path: paths.config))?.hosts.keys.sorted()) ?? []
        // fwd's own files hold Host blocks named after tunnels, which are not hosts to connect a tunnel to.
        let aliases = SSHConfigAliases.read(path: paths.userSSHConfig, home: FwdPaths.passwdHome(),
                                            skipping: [paths.fragment, paths.rootSSHConfig])
        var seen = Set<String>()
        return (configured + aliases).filter { seen.insert($0).inserted }
    }

    /// Whatever goes wrong while completing (even an abort inside the TOML parser) must not write over the
    /// user's command line: stderr goes nowhere for the rest of this short-lived process.
    static func silenceErrors() {
        let fd = open("/dev/null", O_WRONLY)
        guard fd >= 0 else { return }
        dup2(fd, STDERR_FILENO)
        close(fd)
    }

    static func names(groups: Bool) -> [String] {
        guard let config = try? ConfigLoader.load(path: FwdPaths.fromEnvironment().config) else { return [] }
        return config.tunnels.map(\.name) + (groups ? config.groups.map(\.name) : [])
    }

    /// `fwd up a b <TAB>` need not offer a and b again.
    static func unused(_ candidates: [String], words: [String], index: Int) -> [String] {
        // words[0] is fwd and words[1] the subcommand, which may share a name with a tunnel.
        let typed = Set(words.enumerated().filter { $0.offset >= 2 && $0.offset != index }.map(\.element))
        return candidates.filter { !typed.contains($0) }
    }
}
