import Foundation
@testable import FwdCore
import FwdLab
import Testing

/// Issue 24, with the real binary on a real pseudo-terminal and a real sshd: `fwd status` fits an 80-column
/// terminal while piped output stays complete, and `fwd logs NAME` shows N lines, that tunnel's ssh lines and a
/// summary of refused channels instead of a flood.
@Suite(.serialized) struct ReadableOutputTests {
    /// What `argv` drew on a terminal `columns` wide, as lines without escape sequences.
    static func onTerminal(_ f: FwdFixture, _ argv: [String], columns: Int) throws -> [String] {
        try PseudoTerminal.with([FwdFixture.binary] + argv, environment: f.environment, columns: columns) { pty in
            let text = pty.read(since: 0, timeout: 10) { _ in false }
            return text.components(separatedBy: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        }
    }

    @Test func statusFitsAnEightyColumnTerminalAndStaysCompleteWhenPiped() async throws {
        try await FwdFixture.with { f in
            let closed = try LocalPort.free()
            var config = "[hosts.dead]\nhostname = \"127.0.0.1\"\nport = \(closed)\n\n"
            for i in 0..<9 {
                config += "[tunnels.intranet-service-\(i)]\nhost = \"lab\"\nlocal = [\"127.0.0.1:\(20000 + i):wiki.corp.example.lan:80\", \"\(21000 + i):db.corp.example.lan:5432\"]\n\n"
            }
            config += "[tunnels.unreachable]\nhost = \"dead\"\nlocal = \"127.0.0.1:\(try LocalPort.free()):wiki.corp.example.lan:80\"\n"
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: config)
            _ = try f.fwd("up", "unreachable", "--timeout", "3")
            #expect(Self.waitUntil { (try? f.reportedStatus("unreachable")?["last_error"] as? String)?.contains("Connection refused") == true })

            let piped = try f.fwd("status")
            #expect(piped.stdout.contains("LAST ERROR"))
            let full = try #require(try f.reportedStatus("unreachable")?["last_error"] as? String)
            #expect(piped.stdout.contains(full), "piped output is cut: \(piped.stdout)")
            #expect(piped.stdout.contains("127.0.0.1:20000:wiki.corp.example.lan:80"))

            let drawn = try Self.onTerminal(f, ["status"], columns: 80)
            for line in drawn { #expect(line.count <= 80, "\(line.count) columns: \(line)") }
            #expect(drawn.count >= 11, "\(drawn)")
            let error = try #require(drawn.first { $0.hasPrefix("↳") }, "\(drawn)")
            #expect(error.contains("ssh: connect to host 127.0.0.1"), "\(error)")
            // The default bind address is the first thing to go.
            #expect(drawn.contains { $0.contains("-L 20000:wiki.corp") }, "\(drawn)")
            // Named, the error is whole.
            let named = try Self.onTerminal(f, ["status", "unreachable"], columns: 80)
            #expect(named.joined(separator: " ").contains("Connection refused"), "\(named)")
            _ = try f.fwd("down", "--all")
        }
    }

    @Test func logsShowNLinesTheTunnelsOwnSSHLinesAndSummariseRefusals() async throws {
        try await FwdFixture.with { f in
            let (good, bad, closed) = (try LocalPort.free(), try LocalPort.free(), try LocalPort.free())
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            try f.write(config: """
            [tunnels.good]
            host = "lab"
            local = "\(good):127.0.0.1:\(f.web.port)"

            [tunnels.bad]
            host = "lab"
            local = "\(bad):127.0.0.1:\(closed)"

            """)
            _ = try f.fwd("up", "good", "bad", "--timeout", "8")
            #expect(f.waitForState("bad", .degraded, timeout: 15) != nil)
            // Probes of the dead target make the master log refused channels.
            #expect(Self.waitUntil(10) { (FileSystem.read(f.paths.sshLog(host: "lab")) ?? "").components(separatedBy: "open failed").count > 3 })

            let five = try f.fwd("logs", "good", "--lines", "5")
            #expect(five.ok, "\(five.stderr)")
            let shown = five.stdout.split(separator: "\n")
            #expect(shown.count <= 5 && shown.count >= 2, "\(five.stdout)")
            let all = try f.fwd("logs", "good")
            #expect(!all.stdout.split(separator: "\n").contains { $0.contains("open failed") && !$0.hasPrefix("(") }, "\(all.stdout)")
            #expect(all.stdout.contains("channels the server could not open"), "\(all.stdout)")

            #expect(try f.fwd("logs", "--since", "10m").stdout.contains("good"))
            #expect(try f.fwd("logs", "--since", "2099-01-01T00:00").stdout.isEmpty)
            let typo = try f.fwd("logs", "godo")
            #expect(!typo.ok && typo.stderr.contains("good"), "\(typo.stderr)")
            // Events read as sentences.
            #expect(all.stdout.contains("good  wanted up"), "\(all.stdout)")
            _ = try f.fwd("down", "--all")
        }
    }

    static func waitUntil(_ timeout: Double = 10, _ condition: () -> Bool) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            usleep(100_000)
        }
        return false
    }
}
