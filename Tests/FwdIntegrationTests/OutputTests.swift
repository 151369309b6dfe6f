import Foundation
@testable import FwdCore
import FwdLab
import Testing

/// What people and scripts see: colour only on a terminal, JSON with its documented keys, errors on stderr.
@Suite(.serialized) struct OutputTests {
    let escape = "\u{1b}["

    func upWiki(_ f: FwdFixture) throws -> Int {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        let port = try LocalPort.free()
        try f.write(config: """
        [tunnels.wiki]
        host = "lab"
        local = "\(port):127.0.0.1:\(f.web.port)"
        probe = "http"

        [groups]
        work = ["wiki"]

        """)
        let up = try f.fwd("up", "wiki")
        #expect(up.ok, "\(up.stderr)")
        return port
    }

    func json(_ run: FwdRun) throws -> Any {
        #expect(run.ok, "\(run.stderr)")
        return try JSONSerialization.jsonObject(with: Data(run.stdout.utf8))
    }

    /// `script` gives the command a pseudo-terminal, as a person at a terminal would.
    var script: String? {
        ["/usr/bin/script", "/bin/script"].first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test func outputToAPipeHasNoEscapeSequencesEvenWithoutNoColor() async throws {
        try await FwdFixture.with { f in
            _ = try upWiki(f)
            for noColor in ["1", nil] as [String?] {
                for args in [["status"], ["list"], ["show", "wiki"], ["check", "wiki"], ["logs"], ["templates"], ["doctor", "--verbose"],
                             ["service", "status"], ["up", "wiki"], ["down", "wiki"]] {
                    let run = try f.fwd(arguments: args, environment: ["NO_COLOR": noColor])
                    #expect(!(run.stdout + run.stderr).contains(escape), "fwd \(args) wrote an escape sequence to a pipe")
                }
            }
        }
    }

    @Test func colourAndSymbolsOnATerminalUnlessNoColor() async throws {
        guard let script else {
            print("skipped: `script` (util-linux) is not installed, so no pseudo-terminal")
            return
        }
        try await FwdFixture.with { f in
            _ = try upWiki(f)
            let command = "\(FwdFixture.binary) status"
            let coloured = try f.run([script, "-qec", command, "/dev/null"], environment: ["NO_COLOR": nil, "TERM": "xterm"])
            #expect(coloured.ok, "\(coloured.stderr)")
            #expect(coloured.stdout.contains("\u{1b}[32m● up"), "\(coloured.stdout)")
            let plain = try f.run([script, "-qec", command, "/dev/null"], environment: ["NO_COLOR": "1", "TERM": "xterm"])
            #expect(plain.stdout.contains("wiki"))
            #expect(!plain.stdout.contains(escape), "NO_COLOR must turn colour off on a terminal too")
            let json = try f.run([script, "-qec", command + " --json", "/dev/null"], environment: ["NO_COLOR": nil, "TERM": "xterm"])
            #expect(!json.stdout.contains(escape), "--json is never coloured")
        }
    }

    @Test func statusWatchRedrawsOnATerminalAndRefusesAPipe() async throws {
        try await FwdFixture.with { f in
            _ = try upWiki(f)
            let piped = try f.fwd("status", "--watch")
            #expect(!piped.ok)
            #expect(piped.stdout.isEmpty)
            #expect(piped.stderr.contains("standard output is not one"), "\(piped.stderr)")
            #expect(!(try f.fwd("status", "--watch", "--json")).ok)

            guard let script else {
                print("skipped the terminal half: `script` (util-linux) is not installed")
                return
            }
            let out = f.dir + "/watch.out"
            let watch = try ChildProcess([script, "-qfec", "\(FwdFixture.binary) status --watch", "/dev/null"], outputPath: out,
                                         environment: f.environment)
            defer {
                // script ends the session it started (and so fwd) on SIGTERM.
                watch.terminate()
                if watch.waitExit(timeout: 5) == nil { watch.kill() }
            }
            // Wait for two frames: the screen is cleared once, then each frame is drawn over the last from the
            // top left (no blank screen between frames, so no flicker).
            let deadline = Date().addingTimeInterval(20)
            var text = ""
            while Date() < deadline {
                text = FileSystem.read(out) ?? ""
                if text.components(separatedBy: "\u{1b}[H").count > 3 { break }
                usleep(100_000)
            }
            #expect(text.components(separatedBy: "\u{1b}[2J").count == 2, "the screen is cleared once: \(text)")
            let frames = text.components(separatedBy: "\u{1b}[H").dropFirst()
            #expect(frames.count >= 2, "\(text)")
            #expect(frames.allSatisfy { $0.contains("NAME") && $0.contains("wiki") && $0.contains("Ctrl-C to stop") })
        }
    }

    @Test func jsonOutputsParseAndHaveTheDocumentedKeys() async throws {
        try await FwdFixture.with { f in
            _ = try upWiki(f)
            func keys(_ value: Any?) -> Set<String> { Set((value as? [String: Any])?.keys.map { $0 } ?? []) }

            // A second tunnel without a probe of its own: its `probe` is null, not left out.
            #expect(try f.fwd("add", "plain", "--host", "lab", "-L", "\(try LocalPort.free()):127.0.0.1:\(f.web.port)").ok)
            let list = try #require(try json(try f.fwd("list", "--json")) as? [[String: Any]])
            // Every key is always there; one without a value is null (scripts can rely on the shape).
            #expect(list.allSatisfy { keys($0) == ["name", "host", "forwards", "probe", "public", "autostart", "groups"] })
            #expect(list.first { $0["name"] as? String == "plain" }?["probe"] is NSNull)
            #expect(keys((list.first?["forwards"] as? [Any])?.first) == ["kind", "spec", "ssh_argument", "probe"])

            let show = try json(try f.fwd("show", "wiki", "--json"))
            #expect(keys(show) == ["tunnel", "destination", "hostname", "user", "port", "control_path", "commands"])

            for args in [["status", "--json"], ["check", "wiki", "--json"]] {
                let all = try #require(try json(try f.fwd(arguments: args)) as? [[String: Any]])
                // status shows every configured tunnel (plain was never brought up); check, those it checked.
                #expect(all.count == (args[0] == "status" ? 2 : 1))
                let rows = all.filter { $0["name"] as? String == "wiki" }
                #expect(keys(rows.first) == ["name", "state", "desired", "host", "forwards", "pid", "since", "restarts", "probe_ms", "last_error", "config",
                                             "attempts", "next_retry", "last_probe"], "\(args)")
                #expect(rows.first?["config"] as? String == (args[0] == "status" ? "same" : nil), "\(args)")
                #expect(rows.first?["attempts"] as? Int == 0, "\(args)")
                #expect(rows.first?["next_retry"] is NSNull, "\(args)")
                #expect(rows.first?["last_probe"] is String, "\(args)")
                #expect(rows.first?["last_error"] is NSNull, "\(args)")
                let forward = (rows.first?["forwards"] as? [Any])?.first
                #expect(keys(forward) == ["kind", "spec", "allocated_port", "probe", "probe_ms", "ok", "range", "socks_url", "shared"], "\(args)")
                #expect((forward as? [String: Any])?["allocated_port"] is NSNull, "\(args)")
                #expect((forward as? [String: Any])?["shared"] is NSNull, "a loopback forward is not shared: \(args)")
                #expect(rows.first?["state"] as? String == "up")
            }

            let events = try #require(try json(try f.fwd("logs", "wiki", "--json")) as? [[String: Any]])
            #expect(!events.isEmpty)
            #expect(events.allSatisfy { keys($0) == ["id", "time", "tunnel", "host", "kind", "from", "to", "message"] })
            let all = try #require(try json(try f.fwd("logs", "--json")) as? [[String: Any]])
            #expect(all.contains { $0["kind"] as? String == "daemon" && $0["tunnel"] is NSNull })
            #expect(events.contains { $0["kind"] as? String == "state" && $0["to"] as? String == "up" && $0["tunnel"] as? String == "wiki" })
            #expect(!(try f.fwd("logs", "--json", "--follow")).ok)

            let presets = try #require(try json(try f.fwd("templates", "--json")) as? [[String: Any]])
            #expect(presets.allSatisfy { keys($0) == ["name", "summary", "defaults"] })

            // Exits 1 here (no Include installed), but the report is complete JSON all the same.
            let report = try f.fwd("doctor", "--json", "--verbose")
            let doctor = try #require(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
            #expect(keys(doctor) == ["ok", "findings"])
            #expect(doctor["ok"] as? Bool == false && report.status == .exited(1))
            let findings = try #require(doctor["findings"] as? [[String: Any]])
            #expect(findings.allSatisfy { keys($0) == ["check", "status", "message", "fix"] })
            #expect(findings.contains { $0["status"] as? String == "ok" && $0["fix"] is NSNull })
            #expect(findings.filter { $0["status"] as? String == "problem" }.allSatisfy { $0["fix"] is String })

            let service = try json(try f.fwd("service", "status", "--json"))
            #expect(keys(service) == ["manager", "path", "installed", "current", "supervisor_pid", "autostart"])
            #expect((service as? [String: Any])?["current"] is NSNull, "no unit is installed here")
        }
    }

    @Test func quietUpAndDownPrintNothingAndErrorsGoToStderr() async throws {
        try await FwdFixture.with { f in
            _ = try upWiki(f)
            let down = try f.fwd("down", "wiki")
            #expect(down.ok)
            #expect(down.stdout == "wiki: down\n")
            let up = try f.fwd("up", "--quiet", "work")
            #expect(up.ok)
            #expect(up.stdout.isEmpty && up.stderr.isEmpty)
            let quietDown = try f.fwd("down", "-q", "--all")
            #expect(quietDown.ok)
            #expect(quietDown.stdout.isEmpty && quietDown.stderr.isEmpty)

            for args in [["up", "nope"], ["down", "nope"], ["show", "nope"], ["status", "nope"], ["rm", "nope"], ["check", "nope"],
                         ["service", "print", "--manager", "upstart"]] {
                let run = try f.fwd(arguments: args)
                #expect(!run.ok, "fwd \(args)")
                #expect(run.stdout.isEmpty, "fwd \(args) printed its error on stdout")
                #expect(!run.stderr.isEmpty, "fwd \(args) failed without saying why")
            }
        }
    }
}
