import Foundation
import FwdCore
import FwdLab
import Testing

/// The committed completion scripts, and what bash really offers at TAB with them.
@Suite(.serialized) struct CompletionTests {
    let config = """
    [hosts.office]
    hostname = "a.example.com"

    [tunnels.wiki]
    host = "office"
    local = "8080:wiki.lan:80"

    [tunnels.db]
    host = "office"
    local = "5432:db.lan:5432"

    [groups]
    work = ["wiki", "db"]

    """

    @Test(arguments: [("bash", "fwd.bash"), ("zsh", "_fwd"), ("fish", "fwd.fish")])
    func committedScriptsMatchWhatTheBinaryGenerates(shell: String, file: String) async throws {
        try await FwdFixture.with { f in
            let run = try f.fwd("--generate-completion-script", shell)
            #expect(run.ok, "\(run.stderr)")
            let committed = FileSystem.read(FwdBinary.packageRoot + "/completions/" + file)
            #expect(committed == run.stdout, "completions/\(file) is stale: run scripts/generate-completions")
        }
    }

    /// Sources completions/fwd.bash in a real bash, sets COMP_WORDS for `words` (the last one is being completed)
    /// and calls the function `complete -p fwd` names; returns COMPREPLY.
    func complete(_ words: [String], in f: FwdFixture, environment: [String: String?] = [:]) throws -> (candidates: [String], stderr: String) {
        let script = """
        source "$FWD_COMPLETIONS/fwd.bash"
        spec=$(complete -p fwd)
        fn=${spec##*-F }; fn=${fn%% *}
        COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
        COMPREPLY=()
        "$fn" fwd "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\\n' "${COMPREPLY[@]}"
        """
        // The script calls back "${COMP_WORDS[0]}", i.e. `fwd` from PATH, as an installed completion would.
        let bin = (FwdFixture.binary as NSString).deletingLastPathComponent
        var env = environment
        env["PATH"] = bin + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")
        env["FWD_COMPLETIONS"] = FwdBinary.packageRoot + "/completions"
        let run = try f.run(["/bin/bash", "--norc", "-c", script, "bash"] + words, environment: env)
        #expect(run.ok, "\(run.stderr)")
        return (run.stdout.split(separator: "\n").map(String.init), run.stderr)
    }

    @Test func tunnelAndGroupNamesCompleteFromTheConfig() async throws {
        try await FwdFixture.with { f in
            try f.write(config: config)
            #expect(try complete(["fwd", "up", ""], in: f).candidates.sorted() == ["db", "wiki", "work"])
            #expect(try complete(["fwd", "up", "w"], in: f).candidates.sorted() == ["wiki", "work"])
            #expect(try complete(["fwd", "up", "wiki", ""], in: f).candidates.sorted() == ["db", "work"])
            #expect(try complete(["fwd", "down", ""], in: f).candidates.sorted() == ["db", "wiki", "work"])
            #expect(try complete(["fwd", "check", ""], in: f).candidates.sorted() == ["db", "wiki", "work"])
            // Commands that take one tunnel offer tunnels only.
            #expect(try complete(["fwd", "show", ""], in: f).candidates.sorted() == ["db", "wiki"])
            #expect(try complete(["fwd", "rm", "d"], in: f).candidates == ["db"])
            #expect(try complete(["fwd", "logs", ""], in: f).candidates.sorted() == ["db", "wiki"])
            // status takes groups and several names (issue 21).
            #expect(try complete(["fwd", "status", ""], in: f).candidates.sorted() == ["db", "wiki", "work"])
        }
    }

    @Test func templatesAndHostsComplete() async throws {
        try await FwdFixture.with { f in
            try f.write(config: config)
            let presets = try complete(["fwd", "add", "x", "--template", ""], in: f).candidates
            #expect(presets.contains("postgres") && presets.contains("socks"), "\(presets)")
            #expect(try complete(["fwd", "add", "x", "--template", "po"], in: f).candidates.sorted() == ["pop3", "postgres"])

            try f.write(userSSHConfig: """
            Host lab bastion *.corp !blocked
                HostName 10.0.0.1
            Include \(f.dir)/home/.ssh/extra*.conf
            Match host foo
            Host=jump1
            """)
            try FileSystem.writeAtomically("Host inner\n", to: f.dir + "/home/.ssh/extra.conf")
            let hosts = try complete(["fwd", "add", "x", "--host", ""], in: f).candidates
            #expect(hosts == ["office", "lab", "bastion", "jump1", "inner"])
            #expect(try complete(["fwd", "ssh", "b"], in: f).candidates == ["bastion"])
        }
    }

    @Test func aBrokenOrMissingConfigOffersNothingAndPrintsNothing() async throws {
        try await FwdFixture.with { f in
            #expect(try complete(["fwd", "up", ""], in: f).candidates.isEmpty)
            for broken in ["[tunnels.wiki]\nhost = \"office\"\nlcoal = \"1:a:1\"\n", "[tunnels.wiki\n", "[[[\n"] {
                try f.write(config: broken)
                let result = try complete(["fwd", "up", ""], in: f)
                #expect(result.candidates.isEmpty, "\(broken): \(result.candidates)")
                #expect(result.stderr.isEmpty, "\(broken): \(result.stderr)")
            }
        }
    }

    @Test func theCallbackPrintsOnlyCandidatesAndTouchesNoState() async throws {
        try await FwdFixture.with { f in
            try f.write(config: config)
            let run = try f.fwd("---completion", "up", "--", "positional@0", "2", "0", "fwd", "up", "")
            #expect(run.ok)
            #expect(run.stdout.split(separator: "\n") == ["wiki", "db", "work"])
            #expect(run.stderr.isEmpty)
            #expect(!FileManager.default.fileExists(atPath: f.stateDir), "completion must not create state or open the database")
        }
    }
}

/// `fwd down <TAB>` offers what is up first, read from the state database without waiting or writing.
@Suite(.serialized) struct DownCompletionTests {
    @Test func downPrefersTunnelsThatAreUp() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: """
            [tunnels.wiki]
            host = "lab"
            local = "\(try LocalPort.free()):127.0.0.1:\(f.web.port)"

            [tunnels.db]
            host = "lab"
            local = "\(try LocalPort.free()):127.0.0.1:\(f.web.port)"

            [groups]
            work = ["wiki"]
            other = ["db"]
            """)
            func candidates() throws -> [Substring] {
                try f.fwd("---completion", "down", "--", "positional@0", "2", "0", "fwd", "down", "").stdout.split(separator: "\n")
            }
            // Nothing has run yet: no database, every name.
            #expect(try candidates() == ["wiki", "db", "work", "other"])
            #expect(!FileManager.default.fileExists(atPath: f.stateDir))
            #expect(try f.fwd("up", "wiki").ok)
            #expect(try candidates() == ["wiki", "work"])
            #expect(try f.fwd("down", "wiki").ok)
            #expect(try candidates() == ["wiki", "db", "work", "other"])
        }
    }
}
