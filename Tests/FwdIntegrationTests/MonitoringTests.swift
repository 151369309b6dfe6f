import Foundation
@testable import FwdCore
import FwdLab
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Metrics and hooks (issue 23) through the real binary, a real sshd, Debian's promtool and a real Prometheus.
@Suite(.serialized) struct MonitoringTests {
    /// The value of the first series in `text` that starts with `series` (name and labels as printed).
    static func value(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static func wikiConfig(_ f: FwdFixture, port: Int, target: Int, extra: String = "") throws {
        try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
        try f.write(config: """
        \(extra)
        [tunnels.wiki]
        host = "lab"
        local = "\(port):127.0.0.1:\(target)"
        """)
    }

    @Test func promtoolAcceptsFwdMetricsWithAndWithoutASupervisor() async throws {
        guard let promtool = Tool.path("promtool") else {
            print("skipped the promtool test: needs promtool (apt-get install prometheus; .ci/run installs it)")
            return
        }
        try await FwdFixture.with { f in
            try Self.wikiConfig(f, port: try LocalPort.free(), target: f.web.port)
            let up = try f.fwd("up", "wiki", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            let running = try f.fwd("metrics")
            #expect(running.ok, "\(running.stderr)")
            #expect(Self.value(running.stdout, "fwd_tunnel_up{tunnel=\"wiki\",host=\"lab\"}") == 1, "\(running.stdout)")
            #expect(Self.value(running.stdout, "fwd_master_up{host=\"lab\"}") == 1)
            #expect(Self.value(running.stdout, "fwd_tunnel_state{tunnel=\"wiki\",host=\"lab\",state=\"up\"}") == 1)
            #expect(Self.value(running.stdout, "fwd_master_connect_seconds_count{host=\"lab\"}") == 1)
            #expect(running.stdout.contains("fwd_build_info{version=\""))
            let file = f.dir + "/metrics.prom"
            try FileSystem.writeAtomically(running.stdout, to: file)
            let check = try f.run(["/bin/sh", "-c", "\"$0\" check metrics < \"$1\"", promtool, file])
            #expect(check.ok, "promtool: \(check.stdout) \(check.stderr)")

            _ = try f.fwd("daemon", "--stop")
            let offline = try f.fwd("metrics")
            #expect(offline.ok, "\(offline.stderr)")
            #expect(Self.value(offline.stdout, "fwd_tunnel_up{tunnel=\"wiki\",host=\"lab\"}") == 0, "\(offline.stdout)")
            try FileSystem.writeAtomically(offline.stdout, to: file)
            let again = try f.run(["/bin/sh", "-c", "\"$0\" check metrics < \"$1\"", promtool, file])
            #expect(again.ok, "promtool: \(again.stdout) \(again.stderr)")
        }
    }

    /// Prometheus scrapes `[metrics] listen` once a second: it reads the tunnel up, then down within 6 s of its
    /// target dying.
    @Test func prometheusReadsTheTunnelGoDown() async throws {
        guard let prometheus = Tool.path("prometheus") else {
            print("skipped the Prometheus test: needs prometheus (apt-get install prometheus; .ci/run installs it)")
            return
        }
        try await FwdFixture.with { f in
            let target = try TinyHTTPServer(body: "target")
            var targetStopped = false
            defer { if !targetStopped { target.stop() } }
            let metricsPort = try LocalPort.free(), promPort = try LocalPort.free()
            try Self.wikiConfig(f, port: try LocalPort.free(), target: target.port, extra: "[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"\n")
            let up = try f.fwd("up", "wiki", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            let direct = try HTTPGet.fetch(host: "127.0.0.1", port: metricsPort, path: "/metrics")
            #expect(direct.status == 200 && direct.body.contains("fwd_tunnel_up{tunnel=\"wiki\",host=\"lab\"} 1"), "\(direct.body)")

            try FileSystem.writeAtomically("""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
            scrape_configs:
              - job_name: fwd
                static_configs:
                  - targets: ["127.0.0.1:\(metricsPort)"]
            """, to: f.dir + "/prometheus.yml")
            let server = try ChildProcess([prometheus, "--config.file=\(f.dir)/prometheus.yml", "--storage.tsdb.path=\(f.dir)/tsdb",
                                           "--web.listen-address=127.0.0.1:\(promPort)"], outputPath: f.dir + "/prometheus.log")
            defer { server.kill() }
            func query() -> Double? {
                let q = "fwd_tunnel_up%7Btunnel%3D%22wiki%22%7D"
                guard let r = try? HTTPGet.fetch(host: "127.0.0.1", port: promPort, path: "/api/v1/query?query=\(q)", timeout: 2),
                      let json = try? JSONSerialization.jsonObject(with: Data(r.body.utf8)) as? [String: Any],
                      let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]],
                      let value = result.first?["value"] as? [Any], let text = value.last as? String else { return nil }
                return Double(text)
            }
            func wait(for expected: Double, seconds: Double) -> Double? {
                let start = Date()
                while Date().timeIntervalSince(start) < seconds {
                    if query() == expected { return Date().timeIntervalSince(start) }
                    usleep(200_000)
                }
                return nil
            }
            let sawUp = wait(for: 1, seconds: 30)
            #expect(sawUp != nil, "Prometheus never read fwd_tunnel_up 1: \(FileSystem.read(f.dir + "/prometheus.log")?.suffix(2000) ?? "")")
            guard sawUp != nil else { return }
            target.stop()
            targetStopped = true
            let sawDown = wait(for: 0, seconds: 6)
            #expect(sawDown != nil, "Prometheus did not read fwd_tunnel_up 0 within 6 s; state \(f.state("wiki")?.rawValue ?? "?")")
            print("Prometheus read the tunnel down \(sawDown.map { String(format: "%.1f", $0) } ?? "never") s after its target died")
        }
    }

    /// A scrape is answered from the supervisor's memory: while another process holds the database's write lock
    /// (so the store writer waits), scrapes are still answered at once, and their counters stand still until the
    /// writes commit.
    @Test func aScrapeDoesNotWaitForABusyDatabase() async throws {
        guard let sqlite = Tool.path("sqlite3") else {
            print("skipped the busy-database scrape test: needs sqlite3 (apt-get install sqlite3)")
            return
        }
        try await FwdFixture.with { f in
            let metricsPort = try LocalPort.free()
            try Self.wikiConfig(f, port: try LocalPort.free(), target: f.web.port, extra: "[metrics]\nlisten = \"127.0.0.1:\(metricsPort)\"\n")
            #expect(try f.fwd("up", "wiki", "--timeout", "20").ok)
            let series = "fwd_probe_duration_seconds_count{tunnel=\"wiki\",host=\"lab\"}"
            func scrape() throws -> (seconds: Double, probes: Double?) {
                let start = Date()
                let r = try HTTPGet.fetch(host: "127.0.0.1", port: metricsPort, path: "/metrics")
                #expect(r.status == 200 && r.body.contains("fwd_tunnel_up{tunnel=\"wiki\",host=\"lab\"} 1"))
                return (Date().timeIntervalSince(start), Self.value(r.body, series))
            }
            let holder = try ChildProcess(["/bin/sh", "-c", "(echo 'BEGIN EXCLUSIVE;'; sleep 4; echo 'COMMIT;') | \"$0\" \"$1\"",
                                           sqlite, f.paths.database])
            defer { holder.kill() }
            usleep(1_200_000)  // probe rounds every 0.5 s: the writer now waits for the lock
            let during = try scrape()
            usleep(1_000_000)
            let later = try scrape()
            #expect(during.seconds < 0.5 && later.seconds < 0.5, "scrapes took \(during.seconds) s and \(later.seconds) s")
            #expect(during.probes != nil && during.probes == later.probes, "counters moved while nothing could commit: \(during) \(later)")
            #expect(holder.waitExit(timeout: 10) != nil)
            usleep(1_500_000)
            let after = try scrape()
            #expect((after.probes ?? 0) > (later.probes ?? 0), "the held writes did not arrive: \(later) \(after)")
        }
    }

    /// Counters and histograms are kept in the database: a new supervisor carries on from them.
    @Test func countersSurviveASupervisorRestart() async throws {
        try await FwdFixture.with { f in
            try Self.wikiConfig(f, port: try LocalPort.free(), target: f.web.port)
            #expect(try f.fwd("up", "wiki", "--timeout", "20").ok)
            // A master lost while up is one restart.
            for pid in f.masters() { kill(pid, SIGKILL) }
            let deadline = Date().addingTimeInterval(15)
            var first = ""
            repeat {
                first = try f.fwd("metrics").stdout
                if Self.value(first, "fwd_tunnel_restarts_total{tunnel=\"wiki\",host=\"lab\"}") == 1,
                   Self.value(first, "fwd_tunnel_up{tunnel=\"wiki\",host=\"lab\"}") == 1,
                   (Self.value(first, "fwd_probe_duration_seconds_count{tunnel=\"wiki\",host=\"lab\"}") ?? 0) >= 3 { break }
                usleep(200_000)
            } while Date() < deadline
            let probes = try #require(Self.value(first, "fwd_probe_duration_seconds_count{tunnel=\"wiki\",host=\"lab\"}"))
            let sum = try #require(Self.value(first, "fwd_probe_duration_seconds_sum{tunnel=\"wiki\",host=\"lab\"}"))
            #expect(probes >= 3 && sum > 0, "\(first)")
            #expect(Self.value(first, "fwd_tunnel_restarts_total{tunnel=\"wiki\",host=\"lab\"}") == 1, "\(first)")
            #expect(Self.value(first, "fwd_master_connect_seconds_count{host=\"lab\"}") == 2, "\(first)")

            _ = try f.fwd("daemon", "--stop")
            #expect(try f.fwd("up", "wiki", "--timeout", "20").ok)
            let second = try f.fwd("metrics").stdout
            #expect((Self.value(second, "fwd_probe_duration_seconds_count{tunnel=\"wiki\",host=\"lab\"}") ?? 0) >= probes, "\(second)")
            #expect((Self.value(second, "fwd_probe_duration_seconds_sum{tunnel=\"wiki\",host=\"lab\"}") ?? 0) >= sum)
            #expect(Self.value(second, "fwd_tunnel_restarts_total{tunnel=\"wiki\",host=\"lab\"}") == 1, "\(second)")
            #expect(Self.value(second, "fwd_master_connect_seconds_count{host=\"lab\"}") == 3, "\(second)")
        }
    }

    /// A script that appends one line per run: start time|tunnel|host|previous|state|reason|forwards.
    static func recordingHook(_ f: FwdFixture, log: String) throws -> String {
        let path = f.dir + "/hook.sh"
        try FileSystem.writeAtomically("""
        #!/bin/sh
        printf '%s|%s|%s|%s|%s|%s|%s\\n' "$(date +%s.%N)" "$FWD_TUNNEL" "$FWD_HOST" "$FWD_PREVIOUS_STATE" "$FWD_STATE" "$FWD_REASON" "$FWD_FORWARDS" >> '\(log)'
        echo "hook said this on stderr" >&2
        exit 3
        """, to: path)
        chmod(path, 0o755)
        return path
    }

    static func hookLines(_ log: String) -> [[String]] {
        (FileSystem.read(log) ?? "").split(separator: "\n").map { $0.split(separator: "|", omittingEmptySubsequences: false).map(String.init) }
    }

    /// The state events of `tunnel` (time, from, to), from the database.
    static func stateEvents(_ f: FwdFixture, _ tunnel: String) -> [Event] {
        ((try? Store.readOnly(path: f.paths.database)?.events(tunnel: tunnel)) ?? []).filter { $0.kind == .state }
    }

    /// A hook gets the tunnel, host, old and new state, reason and forwards in its environment, within 1 s of the
    /// change; a hook that hangs is killed at its timeout and logged, and holds up neither another tunnel's
    /// recovery nor its hooks.
    @Test func hooksGetTheChangeAndAHangingOneHoldsUpNothing() async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            let target = try TinyHTTPServer(body: "target")
            let targetPort = target.port
            var current: TinyHTTPServer? = target
            defer { current?.stop() }
            let log = f.dir + "/hook.log"
            let hook = try Self.recordingHook(f, log: log)
            let quickPort = try LocalPort.free(), slowPort = try LocalPort.free()
            let marker = Int.random(in: 40000...49999)
            try f.write(config: """
            [hooks]
            on_change = "\(hook)"
            timeout = 2

            [tunnels.quick]
            host = "lab"
            local = "\(quickPort):127.0.0.1:\(targetPort)"

            [tunnels.slow]
            host = "lab"
            local = "\(slowPort):127.0.0.1:\(targetPort)"
            on_change = "sleep \(marker)"
            """)
            let up = try f.fwd("up", "quick", "slow", "--timeout", "20")
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            // The target dies and comes back while slow's hooks hang.
            current?.stop()
            current = nil
            #expect(f.waitForState("quick", .degraded, timeout: 10) != nil)
            current = try TinyHTTPServer(port: targetPort, body: "target")
            let recovered = f.waitForState("quick", .up, timeout: 10)
            #expect(recovered != nil && recovered! < 5, "quick took \(recovered ?? -1) s to recover")
            usleep(1_500_000)

            let lines = Self.hookLines(log)
            let changes = Self.stateEvents(f, "quick")
            #expect(changes.count >= 4, "\(changes)")
            for event in changes {
                let line = lines.first { $0.count == 7 && $0[1] == "quick" && $0[3] == event.from && $0[4] == event.to }
                let seen = try #require(line, "no hook ran for quick \(event.from ?? "?") → \(event.to ?? "?"): \(lines)")
                #expect(seen[2] == "lab")
                #expect(seen[6] == "127.0.0.1:\(quickPort):127.0.0.1:\(targetPort)")
                #expect(!seen[5].isEmpty)
                let delay = (Double(seen[0]) ?? 0) - event.time.timeIntervalSince1970
                #expect(delay < 1, "the hook for \(event.from ?? "?") → \(event.to ?? "?") started \(delay) s after the change")
            }
            #expect(lines.contains { $0.count == 7 && $0[4] == "degraded" && $0[5].contains("does not answer") }, "\(lines)")
            #expect(!lines.contains { $0.count > 1 && $0[1] == "slow" }, "slow ran the global hook: \(lines)")

            // slow's hooks were killed at 2 s (the whole process group) and said so in the log.
            let deadline = Date().addingTimeInterval(6)
            while Date() < deadline, !f.processes(where: { $0.contains { $0.contains("\(marker)") } }).isEmpty { usleep(200_000) }
            #expect(f.processes(where: { $0.contains { $0.contains("\(marker)") } }).isEmpty, "a hanging hook was not killed")
            let events = (try? Store.readOnly(path: f.paths.database)?.events()) ?? []
            let hookEvents = events.filter { $0.kind == .hook }
            #expect(hookEvents.contains { $0.tunnel == "slow" && $0.message.contains("did not finish within 2 s and was killed") }, "\(hookEvents.map(\.message))")
            #expect(hookEvents.contains { $0.tunnel == "quick" && $0.message.contains("exited with status 3") && $0.message.contains("hook said this on stderr") },
                    "\(hookEvents.map(\.message))")

            // Stopping the supervisor takes the tunnels down: those hooks run, and none outlives it.
            let stop = Date()
            _ = try f.fwd("daemon", "--stop")
            #expect(Date().timeIntervalSince(stop) < 10)
            #expect(f.processes(where: { $0.contains { $0.contains("\(marker)") } }).isEmpty, "a hook outlived its supervisor")
            let last = ((try? Store.readOnly(path: f.paths.database)?.events()) ?? []).filter { $0.kind == .hook }
            // Its timeout (2 s) ends before the supervisor's grace (3 s) does.
            #expect(last.contains { $0.tunnel == "slow" && $0.message.contains("up → down did not finish within 2 s and was killed") }, "\(last.map(\.message))")
            #expect(Self.hookLines(log).contains { $0.count == 7 && $0[1] == "quick" && $0[4] == "down" }, "\(Self.hookLines(log))")
        }
    }

    /// On a private session bus with a stand-in notification server: a dropped tunnel sends a Notify naming it
    /// within 5 s, a flapping one is held to one per interval and a summary, and `notify = false` sends none.
    @Test func desktopNotificationsOnAPrivateSessionBus() async throws {
        try await FwdFixture.with { f in
            guard let standIn = try NotificationStandIn.start(in: f.dir) else { return }
            defer { standIn.stop() }
            let address = standIn.address
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            var target: TinyHTTPServer? = try TinyHTTPServer(body: "target")
            let port = target!.port
            defer { target?.stop() }
            try f.write(config: """
            [tunnels.loud]
            host = "lab"
            local = "\(try LocalPort.free()):127.0.0.1:\(port)"

            [tunnels.quiet]
            host = "lab"
            local = "\(try LocalPort.free()):127.0.0.1:\(port)"
            notify = false
            """)
            let env: [String: String?] = ["DBUS_SESSION_BUS_ADDRESS": address, "FWD_NOTIFY_INTERVAL": "4"]
            let up = try f.fwd(arguments: ["up", "loud", "quiet", "--timeout", "20"], environment: env)
            #expect(up.ok, "fwd up: \(up.stdout) \(up.stderr)")
            func notes() -> [[String: Any]] { standIn.notes }
            #expect(notes().isEmpty, "a first up is not news: \(notes())")

            // The target dies: loud is told of within 5 s.
            target?.stop()
            target = nil
            let dropped = Date()
            var first: [String: Any]?
            while first == nil, Date().timeIntervalSince(dropped) < 5 {
                first = notes().first { ($0["summary"] as? String)?.contains("loud") == true }
                usleep(100_000)
            }
            let note = try #require(first, "no notification within 5 s: \(notes())")
            #expect(note["summary"] as? String == "fwd: loud is degraded" && note["app"] as? String == "fwd", "\(note)")
            #expect((note["body"] as? String)?.contains("does not answer") == true, "\(note)")

            // It flaps: back up and down again within the interval; those are held, then summarized once.
            target = try TinyHTTPServer(port: port, body: "target")
            #expect(f.waitForState("loud", .up, timeout: 5) != nil)
            target?.stop()
            target = nil
            #expect(f.waitForState("loud", .degraded, timeout: 5) != nil)
            let held = notes().filter { ($0["summary"] as? String)?.contains("loud") == true }
            #expect(held.count == 1, "changes within the interval were sent: \(held)")
            usleep(4_500_000)
            let after = notes().filter { ($0["summary"] as? String)?.contains("loud") == true }
            #expect(after.count == 2, "\(after)")
            #expect((after.last?["summary"] as? String)?.hasPrefix("fwd: loud changed state 2 more times; now degraded") == true, "\(after)")
            #expect(!notes().contains { ($0["summary"] as? String)?.contains("quiet") == true }, "notify = false was notified: \(notes())")
        }
    }

    /// The alert rules the README and docs/usage.md show are rules `promtool check rules` accepts.
    @Test func theDocumentedAlertRulesPassPromtool() throws {
        guard let promtool = Tool.path("promtool") else {
            print("skipped the promtool rules test: needs promtool (apt-get install prometheus; .ci/run installs it)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fwd-rules-\(UUID().uuidString.prefix(8))").path
        try FileSystem.makePrivateDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for doc in ["README.md", "docs/usage.md"] {
            let text = try #require(FileSystem.read(FwdBinary.packageRoot + "/" + doc))
            let blocks = text.components(separatedBy: "```yaml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
            let rules = try #require(blocks.first { $0.contains("alert: FwdTunnelDown") }, "\(doc) has no alert rules")
            #expect(rules.contains("alert: FwdLoginNeeded") && rules.contains("for: 1m"))
            let file = dir + "/rules.yml"
            try FileSystem.writeAtomically(rules, to: file)
            let check = try ChildProcess.run([promtool, "check", "rules", file])
            #expect(check.exit == .exited(0) && check.output.contains("SUCCESS: 2 rules found"), "\(doc): \(check.output)")
        }
    }
}
