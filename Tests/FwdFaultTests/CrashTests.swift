import Foundation
@testable import FwdCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Processes die without cleaning up: the ssh master, the supervisor, both. Afterwards there is exactly one
/// master per host, every ssh belongs to the running supervisor, and the tunnels work.
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct CrashTests {
    func twoTunnels(_ f: FaultFixture) throws {
        try f.write(config: f.webTunnel("wiki", port: 18080) + """
        [tunnels.greeter]
        host = "lab"
        local = "12525:\(Topology.serviceName):\(FaultFixture.bannerPort)"
        probe = "banner"

        """)
        let up = try f.fwd("up", "wiki", "greeter")
        try #require(up.ok, "\(up.stderr)\n\(f.eventLog())")
    }

    /// One master, owned by the one supervisor, and the page loads.
    func expectHealthy(_ f: FaultFixture, _ context: String) {
        #expect(f.supervisorProcesses().count == 1, "\(context): supervisors \(f.supervisorProcesses())")
        #expect(f.masters().count == 1, "\(context): masters \(f.masters())")
        #expect(f.sshProcesses() == f.masters(), "\(context): ssh besides the master: \(f.sshProcesses())")
        #expect(f.orphanedSSH().isEmpty, "\(context): orphaned ssh \(f.orphanedSSH())")
        #expect(f.fetch(port: 18080)?.body == f.pageBody, "\(context): the page does not load")
        #expect(f.state("wiki") == .up && f.state("greeter") == .up, "\(context): \(f.state("wiki").debugDescription) \(f.state("greeter").debugDescription)")
    }

    @Test func sigkilledMasterIsReplacedByExactlyOne() async throws {
        try await FaultFixture.with { f in
            try twoTunnels(f)
            var figures: [Double] = []
            for _ in 1...3 {
                let old = try #require(f.masters().first)
                kill(old, SIGKILL)
                let killed = Date()
                let back = f.waitUntil(timeout: 20) {
                    let m = f.masters()
                    return m.count == 1 && m[0] != old && f.state("wiki") == .up && f.state("greeter") == .up
                }
                let page = f.waitForPage(port: 18080, timeout: 10).map { _ in Date().timeIntervalSince(killed) }
                figures.append(try #require(back ?? page, "no new master after SIGKILL"))
                #expect(!ProcessTable.isAlive(old) || ProcessTable.state(of: old) == "Z")
                expectHealthy(f, "after SIGKILL of master \(old)")
            }
            print("fwd fault: master SIGKILL — tunnels up again after \(figures.map { String(format: "%.3f", $0) }.joined(separator: ", ")) s; one master, no orphans")
            #expect(f.status("wiki")?.restarts == 3)
        }
    }

    @Test func sigkilledSupervisorIsReplacedAndItsMasterReaped() async throws {
        try await FaultFixture.with { f in
            try twoTunnels(f)
            for round in 1...2 {
                let daemon = try #require(f.supervisorProcesses().first)
                let master = try #require(f.masters().first)
                kill(daemon, SIGKILL)
                #expect(f.waitUntil(timeout: 5) { f.supervisorProcesses().isEmpty } != nil)
                // ssh outlives its SIGKILLed parent (nothing can prevent that); the next supervisor must reap it.
                #expect(f.masters() == [master], "round \(round): the master should outlive the supervisor")
                let started = Date()
                let up = try f.fwd("up", "wiki", "greeter")
                #expect(up.ok, "\(up.stderr)")
                print("fwd fault: supervisor SIGKILL (round \(round)) — `fwd up` brought both tunnels back in \(String(format: "%.3f", Date().timeIntervalSince(started))) s")
                #expect(!ProcessTable.isAlive(master), "round \(round): the old master \(master) was not reaped")
                expectHealthy(f, "after SIGKILL of supervisor \(daemon)")
            }
            #expect(f.events(kind: .master).contains { $0.message.contains("left by a previous supervisor") })
        }
    }

    /// Both die at once: the master's socket file stays behind, next to its record in the store.
    @Test func supervisorAndMasterKilledTogetherLeaveNothingBehind() async throws {
        try await FaultFixture.with { f in
            try twoTunnels(f)
            let socket = try #require(try f.store().masters().first?.socket)
            let daemon = try #require(f.supervisorProcesses().first)
            let master = try #require(f.masters().first)
            kill(daemon, SIGKILL)
            kill(master, SIGKILL)
            #expect(f.waitUntil(timeout: 5) { f.supervisorProcesses().isEmpty && f.masters().isEmpty } != nil)
            #expect(FileSystem.exists(socket), "a SIGKILLed master leaves its socket file")
            let up = try f.fwd("up", "wiki", "greeter")
            #expect(up.ok, "\(up.stderr)\n\(f.eventLog())")
            expectHealthy(f, "after SIGKILL of both")
            let check = try run(f.topology.exec(f.topology.c, ["ssh", "-F", "none", "-S", socket, "-O", "check", "x"]))
            #expect(check.contains("Master running (pid=\(f.masters().first ?? -1))"), "\(check)")
        }
    }

    /// A stale ControlPath socket the store knows nothing about (e.g. the state directory was wiped): fwd
    /// removes it instead of running a master without multiplexing beside it.
    @Test func staleControlSocketAtStartIsReplaced() async throws {
        try await FaultFixture.with { f in
            try twoTunnels(f)
            let socket = try #require(try f.store().masters().first?.socket)
            #expect(try f.fwd("down", "--all").ok)
            let stop = try f.fwd("daemon", "--stop")
            #expect(stop.ok, "\(stop.stderr) \(stop.stdout)")
            #expect(f.waitUntil(timeout: 10) { f.supervisorProcesses().isEmpty && f.sshProcesses().isEmpty } != nil)
            #expect(try f.store().masters().isEmpty)
            try TestListener.deadSocket(at: socket)
            #expect(FileSystem.exists(socket))

            let up = try f.fwd("up", "wiki", "greeter")
            #expect(up.ok, "\(up.stderr)\n\(f.eventLog())")
            expectHealthy(f, "with a stale socket at start")
            let check = try run(f.topology.exec(f.topology.c, ["ssh", "-F", "none", "-S", socket, "-O", "check", "x"]))
            #expect(check.contains("Master running (pid=\(f.masters().first ?? -1))"), "multiplexing must work: \(check)")
            let log = FileSystem.read(f.stateDir + "/logs/lab.log") ?? ""
            #expect(!log.contains("already exists, disabling multiplexing"), "\(log)")
        }
    }
}

/// Two fwd hosts that reach the same server as the same user (two aliases of one machine) have the same `%C`.
/// fwd names each master's socket after the host as written (FwdPaths.controlSocket), so each alias gets its own
/// master with its own settings, and neither disturbs the other. (With `%C` sockets, both masters bound one
/// path: the second ran "disabling multiplexing" and its tunnels stayed `starting`.)
@Suite(.serialized, .enabled(if: isRoot, "needs root for network namespaces"))
struct SharedControlPathTests {
    @Test func twoAliasesOfOneServerGetOneMasterEach() async throws {
        try await FaultFixture.with { f in
            try f.write(userSSHConfig: f.hostBlock("lab") + f.hostBlock("lab2"))
            try f.write(config: f.webTunnel("a", port: 18081, host: "lab") + f.webTunnel("b", port: 18082, host: "lab2"))
            let up = try f.fwd("up", "a", "b", "--timeout", "15")
            #expect(up.ok, "\(up.stderr)")
            #expect(f.masters().count == 2, "one master per alias: \(f.masters())")
            #expect(f.fetch(port: 18082)?.body == f.pageBody)
            let down = try f.fwd("down", "b")
            #expect(down.ok, "\(down.stderr)")
            try await Task.sleep(for: .milliseconds(500))
            #expect(f.masters().count == 1, "b's master exits with its last tunnel: \(f.masters())")
            #expect(f.state("a") == .up)
            #expect(f.fetch(port: 18081)?.body == f.pageBody, "taking b down must not break a")
            let logs = (FileSystem.read(f.stateDir + "/logs/lab.log") ?? "") + (FileSystem.read(f.stateDir + "/logs/lab2.log") ?? "")
            #expect(!logs.contains("disabling multiplexing"), "\(logs)")
        }
    }
}
