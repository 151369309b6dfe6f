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
            #expect(db["probe"] as? String == "tcp")
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
