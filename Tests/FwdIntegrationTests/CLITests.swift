import Foundation
import FwdCore
import Testing

/// The real binary's editing and listing commands; no sshd needed beyond the fixture.
@Suite(.serialized) struct CLITests {
    let base = """
    # keep me
    [hosts.office]
    hostname = "a.example.com"   # and me

    [tunnels.wiki]
    host = "office"
    local = "8080:wiki.lan:80"
    probe = "http"

    """

    @Test func addListRemoveRoundTrip() async throws {
        try await FwdFixture.with { f in
            try f.write(config: base)
            let add = try f.fwd("add", "socks", "--host", "office", "-D", "1080")
            #expect(add.ok, "\(add.stderr)")
            let preset = try f.fwd("add", "db", "--template", "postgres", "--host", "office", "--target", "db.lan", "--port", "15432")
            #expect(preset.ok, "\(preset.stderr)")
            let text = try #require(FileSystem.read(f.configPath))
            #expect(text.hasPrefix(base))

            let list = try f.fwd("list", "--json")
            #expect(list.ok)
            let tunnels = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
            #expect(tunnels.map { $0["name"] as? String } == ["wiki", "socks", "db"])
            let db = tunnels[2]
            #expect(db["probe"] as? String == "postgres", "the postgres preset probes with SSLRequest")
            #expect((db["forwards"] as? [[String: Any]])?.first?["ssh_argument"] as? String == "127.0.0.1:15432:db.lan:5432")

            let table = try f.fwd("list")
            #expect(table.stdout.contains("wiki"))
            #expect(table.stdout.contains("-L 8080:wiki.lan:80"))
            #expect(!table.stdout.contains("\u{1b}["))

            #expect(try f.fwd("rm", "socks").ok)
            #expect(try f.fwd("rm", "db").ok)
            #expect(FileSystem.read(f.configPath) == base)
        }
    }

    @Test func refusedEditsChangeNothing() async throws {
        try await FwdFixture.with { f in
            try f.write(config: base)
            let attempts: [[String]] = [
                ["add", "wiki", "--host", "office", "-L", "1:a:1"],                       // duplicate
                ["add", "x", "--host", "-oProxyCommand=touch /tmp/fwd-pwned", "-L", "1:a:1"],
                ["add", "x", "--host", "office\nProxyCommand touch /tmp/fwd-pwned", "-L", "1:a:1"],
                ["add", "x", "--host", "office", "-L", "1:a:1\n    LocalCommand touch /tmp/fwd-pwned"],
                ["add", "/etc/passwd", "--host", "office", "-L", "1:a:1"],
                ["add", "x", "--host", "office", "-L", "0.0.0.0:1:a:1"],                  // public without --public
                ["add", "x", "--template", "postgres", "--host", "office", "--target", "a\"\nprobe=\"none"],
                ["add", "x", "--host", "office", "-L", "99999:a:1"],
                ["rm", "nope"],
            ]
            for args in attempts {
                let run = try f.fwd(arguments: args)
                #expect(!run.ok, "fwd \(args) should fail")
                #expect(!run.stderr.isEmpty, "fwd \(args) should say why")
                #expect(FileSystem.read(f.configPath) == base, "fwd \(args) changed the config")
            }
            #expect(!FileManager.default.fileExists(atPath: "/tmp/fwd-pwned"))
            #expect(!FileManager.default.fileExists(atPath: f.stateDir + "/ssh_config.fwd"))
        }
    }

    /// Hostile configs and arguments: every command that reads them fails with a located error, and nothing is run
    /// (the marker file a smuggled command would create never appears) or written (no fragment, no state, no
    /// Include in the user's ssh_config, no supervisor, no ssh).
    @Test func hostileConfigsAndArgumentsRunAndWriteNothing() async throws {
        try await FwdFixture.with { f in
            let marker = f.dir + "/pwned"
            let touch = "touch \(marker)"
            let configs = [
                "[hosts.office]\nhostname = \"a\\nProxyCommand \(touch)\"\n[tunnels.x]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
                "[hosts.office]\noptions = { LocalCommand = \"\(touch)\", PermitLocalCommand = \"yes\" }\n[tunnels.x]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
                "[hosts.office]\noptions = { Compression = \"yes\\nInclude \(marker)\" }\n[tunnels.x]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
                "[tunnels.x]\nhost = \"-oProxyCommand=\(touch)\"\nlocal = \"1:a:1\"\n",
                "[tunnels.x]\nhost = \"office\"\nlocal = \"1:a:1\\n    ProxyCommand \(touch)\"\n",
                "[tunnels.\"x\\nHost *\\n    ProxyCommand \(touch)\"]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
                "[tunnels.\"/etc/passwd\"]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
                "[tunnels.x]\nhost = \"office\"\nlocal = \"/tmp/../\\u0301x.sock:a:1\"\n",
                "[=]\n[tunnels.x]\nhost = \"office\"\nlocal = \"1:a:1\"\n",
            ]
            for config in configs {
                try f.write(config: config)
                for args in [["up", "x"], ["show", "x"], ["list"], ["config", "print"], ["config", "install"], ["check", "x"]] {
                    let run = try f.fwd(arguments: args)
                    #expect(!run.ok, "fwd \(args) accepted \(String(reflecting: config))")
                    #expect(run.stderr.range(of: #"\#(f.configPath):\d+:\d+: "#, options: .regularExpression) != nil,
                            "fwd \(args): no file:line:col in \(run.stderr)")
                }
            }
            let arguments: [[String]] = [
                ["up", "--", "-oProxyCommand=\(touch)"],
                ["show", "../../etc/passwd"],
                ["add", "y", "--host", "alice@-oProxyCommand=\(touch)", "-L", "1:a:1"],
                ["add", "y", "--host", "office", "-L", "1:a:1", "--probe", "http\nProxyCommand \(touch)"],
                ["add", "y", "--host", "office", "-R", "/run/../\u{301}x.sock:a:1"],
            ]
            try f.write(config: base)
            for args in arguments {
                let run = try f.fwd(arguments: args)
                #expect(!run.ok, "fwd \(args) should fail")
                #expect(FileSystem.read(f.configPath) == base)
            }
            #expect(!FileManager.default.fileExists(atPath: marker), "a smuggled command ran")
            #expect(!FileManager.default.fileExists(atPath: f.stateDir + "/ssh_config.fwd"))
            // Not even the state database: every command reads the config before it opens the store.
            let state = (try? FileManager.default.contentsOfDirectory(atPath: f.stateDir)) ?? []
            #expect(state.isEmpty, "\(state)")
            #expect(!FileManager.default.fileExists(atPath: f.userSSHConfig))
            #expect(f.supervisorProcesses().isEmpty)
            #expect(f.sshProcesses().isEmpty)
        }
    }

    @Test func brokenConfigIsReportedWithLocationAndNothingIsWritten() async throws {
        try await FwdFixture.with { f in
            try f.write(config: base + "\n[tunnels.bad]\nhost = \"office\"\nlcoal = \"1:a:1\"\n")
            for args in [["list"], ["config", "print"], ["config", "install"], ["add", "y", "--host", "office", "-L", "2:a:2"]] {
                let run = try f.fwd(arguments: args)
                #expect(!run.ok)
                #expect(run.stderr.contains("\(f.configPath):12:1: unknown key \"lcoal\""), "\(run.stderr)")
            }
            #expect(!FileManager.default.fileExists(atPath: f.userSSHConfig))
            #expect(!FileManager.default.fileExists(atPath: f.stateDir + "/ssh_config.fwd"))
        }
    }

    @Test func helpExistsForEveryCommand() async throws {
        try await FwdFixture.with { f in
            for command in [["list"], ["show"], ["add"], ["rm"], ["config", "print"], ["config", "install"],
                            ["config", "uninstall"], ["config", "path"], ["templates"]] {
                let run = try f.fwd(arguments: command + ["--help"])
                #expect(run.ok)
                #expect(run.stdout.contains("USAGE: fwd \(command.joined(separator: " "))"), "\(run.stdout)")
            }
            let templates = try f.fwd("templates")
            #expect(templates.stdout.contains("postgres"))
        }
    }
}
