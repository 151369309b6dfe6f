import Foundation
import FwdCore
import Testing

/// `fwd up <TAB>` typed into interactive zsh (with compinit) and fish on a pseudo-terminal, with the committed
/// completion scripts: the names come from the config at TAB time, so a tunnel added afterwards is offered too.
@Suite(.serialized) struct InteractiveCompletionTests {
    static let config = """
    [tunnels.wiki]
    host = "office"
    local = "8080:wiki.lan:80"

    [tunnels.db]
    host = "office"
    local = "5432:db.lan:5432"

    [groups]
    work = ["wiki", "db"]

    """

    static func shell(_ name: String) -> String? {
        ["/usr/bin/\(name)", "/bin/\(name)"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// The names in what the shell drew after a TAB, that is the words of the completion list.
    static func words(_ text: String) -> Set<String> {
        Set(text.split(whereSeparator: { $0.isWhitespace }).map(String.init))
    }

    /// Starts `argv` on a pty with `fwd` (the built one) first on PATH and a private HOME, types `setup`, waits
    /// for "ready42", then hands the terminal to `body`.
    func withShell(_ argv: [String], setup: String, in f: FwdFixture, _ body: (PseudoTerminal) throws -> Void) throws {
        let home = f.dir + "/shell-home"
        try FileSystem.makePrivateDirectory(home)
        let bin = (FwdFixture.binary as NSString).deletingLastPathComponent
        let env = f.environment([
            "PATH": bin + ":/usr/local/bin:/usr/bin:/bin", "HOME": home, "TERM": "xterm",
            "XDG_CONFIG_HOME": home + "/.config", "XDG_DATA_HOME": home + "/.local/share",
            "XDG_CACHE_HOME": home + "/.cache", "ZDOTDIR": home, "FWD_CONFIG": f.configPath,
        ])
        try PseudoTerminal.with(argv, environment: env) { pty in
            let start = pty.mark
            // An empty working directory: a file named like a tunnel must not pass for a completed name.
            pty.type("cd '\(home)'\n")
            // The shell echoes what is typed, "ready$((6*7))" or "ready(math 6 \* 7)"; only its output reads ready42.
            pty.type(setup + "\n")
            let ready = pty.read(since: start, timeout: 20) { $0.contains("ready42") }
            try #require(ready.contains("ready42"), "\(argv[0]) did not start: \(ready)")
            try body(pty)
        }
    }

    /// Types `line` and a TAB, and returns what the shell drew until `expected` were all there (or 10 s passed).
    /// Ctrl-U first clears whatever the previous completion left on the line.
    func complete(_ line: String, on pty: PseudoTerminal, expecting expected: Set<String>) -> Set<String> {
        let start = pty.mark
        pty.type("\u{15}" + line + "\t")
        return Self.words(pty.read(since: start) { expected.isSubset(of: Self.words($0)) })
    }

    func checkNames(on pty: PseudoTerminal, in f: FwdFixture) throws {
        let all = complete("fwd up ", on: pty, expecting: ["wiki", "db", "work"])
        #expect(all.isSuperset(of: ["wiki", "db", "work"]), "\(all)")
        let w = complete("fwd up w", on: pty, expecting: ["wiki", "work"])
        #expect(w.isSuperset(of: ["wiki", "work"]) && !w.contains("db"), "\(w)")
        // Asked at TAB time: a tunnel added to the config now is offered by the same shell.
        try f.write(config: Self.config + "\n[tunnels.cache]\nhost = \"office\"\nlocal = \"6379:cache.lan:6379\"\n")
        let live = complete("fwd up ", on: pty, expecting: ["wiki", "db", "work", "cache"])
        #expect(live.isSuperset(of: ["wiki", "db", "work", "cache"]), "\(live)")
    }

    @Test func zshCompletesTunnelAndGroupNames() async throws {
        guard let zsh = Self.shell("zsh") else {
            print("skipped: zsh is not installed (apt-get install zsh), so the zsh completion is only drift-tested")
            return
        }
        try await FwdFixture.with { f in
            try f.write(config: Self.config)
            let setup = "PS1='%% '; fpath=(\(FwdBinary.packageRoot)/completions $fpath); autoload -Uz compinit; "
                + "compinit -u -d \(f.dir)/zcompdump; print ready$((6*7))"
            try withShell([zsh, "-f", "-i"], setup: setup, in: f) { pty in try checkNames(on: pty, in: f) }
        }
    }

    @Test func fishCompletesTunnelAndGroupNames() async throws {
        guard let fish = Self.shell("fish") else {
            print("skipped: fish is not installed (apt-get install fish), so the fish completion is only drift-tested")
            return
        }
        try await FwdFixture.with { f in
            try f.write(config: Self.config)
            let setup = "set -g fish_greeting; function fish_prompt; echo -n '> '; end; "
                + "set -p fish_complete_path \(FwdBinary.packageRoot)/completions; echo ready(math 6 \\* 7)"
            try withShell([fish, "--no-config", "-i"], setup: setup, in: f) { pty in try checkNames(on: pty, in: f) }
        }
    }
}
