import Foundation
import Testing
@testable import FwdCore
import FwdLab

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `remote` probe against a private sshd and a real ControlMaster, spoken to over its control socket
/// (PROTOCOL.mux) without any ssh process: a working -R forward, one whose local target refused, and one
/// whose server-side listener is gone are told apart, each with a definite answer well before the timeout.
@Suite struct RemoteProbeTests {
    @Test func remoteProbeTellsUpFromTargetDownFromListenerDown() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(.greet("hello\n", thenClose: false))
            let remotePort = try LocalPort.free()
            let spec = try ForwardSpec.parse("127.0.0.1:\(remotePort):127.0.0.1:\(target.port)", kind: .remote)
            try await lab.mux(.forward(spec))
            let probe = HealthProbe(kind: .remote, timeout: 2, master: MasterProbeContext(controlSocket: lab.socket))

            let answered = await probe.run(spec)
            #expect(answered.outcome == .up)
            #expect(answered.latencyMs > 0 && answered.latencyMs < 1000)

            // A target that accepts and waits for the client (any HTTP server): up after a short grace, and
            // the latency is the channel's round trip, not a timeout.
            target.stopAccepting()
            let start = ContinuousClock.now
            let silent = await probe.run(spec)
            let took = ContinuousClock.now - start
            #expect(silent.outcome == .up)
            // Bounds loose enough for a loaded CI machine, far from the 2 s timeout the old probe reported.
            #expect(silent.latencyMs > 0 && silent.latencyMs < 500, "latency \(silent.latencyMs) ms is a round trip")
            #expect(took < .milliseconds(1000), "the probe waited \(took) for a silent target")
            #expect(took.milliseconds >= silent.latencyMs, "the grace is not counted as latency")

            target.stop()
            let refusedStart = ContinuousClock.now
            let refused = await probe.run(spec)
            #expect(ContinuousClock.now - refusedStart < .milliseconds(1000), "a refusal is known at once")
            guard case .targetDown(let message) = refused.outcome else {
                Issue.record("expected targetDown with nothing on the local target, got \(refused.outcome)")
                return
            }
            #expect(message.contains("127.0.0.1:\(remotePort)"))

            try await lab.mux(.cancel(spec))
            let gone = await probe.run(spec)
            guard case .listenerDown(let reason) = gone.outcome else {
                Issue.record("expected listenerDown after -O cancel, got \(gone.outcome)")
                return
            }
            #expect(reason.contains("127.0.0.1:\(remotePort)"))
            #expect(lab.sshChildrenBesidesTheMaster().isEmpty, "probing runs no ssh")
        }
    }

    /// The evidence behind `HealthProbe.acceptGrace`: a refused local target's EOF arrives well inside it.
    @Test func aRefusalArrivesWellInsideTheGrace() async throws {
        try await RemoteProbeLab.with { lab in
            let remotePort = try LocalPort.free()
            let spec = try ForwardSpec.parse("127.0.0.1:\(remotePort):127.0.0.1:\(try LocalPort.free())", kind: .remote)
            try await lab.mux(.forward(spec))
            let context = MasterProbeContext(controlSocket: lab.socket)
            var samples: [(Duration, Duration)] = []
            for _ in 0..<20 {
                let opened = await context.openChannel(host: "127.0.0.1", port: remotePort, until: .now + .seconds(2))
                switch consume opened {
                case .opened(let channel, let rtt):
                    let opened = ContinuousClock.now
                    let end = await channel.read(upTo: 1, until: .now + .seconds(1))
                    #expect(end == .closed)
                    samples.append((rtt, ContinuousClock.now - opened))
                case .failed(let failure):
                    Issue.record("the listener is there: \(failure.failure)")
                }
            }
            let late = samples.filter { $0.1 >= HealthProbe.acceptGrace(roundTrip: $0.0) }
            print("remote probe timings (round trip, EOF after open):", samples.map { "\($0.0) \($0.1)" })
            // A loaded machine may delay one; a later probe then reads the refusal.
            #expect(samples.count == 20 && late.count <= 2, "EOFs later than the grace: \(late)")
        }
    }

    @Test func aServerAllocatedPortIsProbedThroughAllocatedPort() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(.greet("hello\n", thenClose: false))
            defer { target.stop() }
            let spec = try ForwardSpec.parse("127.0.0.1:0:127.0.0.1:\(target.port)", kind: .remote)
            let added = try await lab.mux(.forward(spec))
            let allocated = try #require(Int(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),
                                         "-O forward -R 0:… prints the allocated port, got \(String(reflecting: added.stdout))")
            let probe = HealthProbe(kind: .remote, timeout: 2, master: MasterProbeContext(controlSocket: lab.socket))
            #expect(await probe.run(spec, allocatedPort: allocated).outcome == .up)
        }
    }

    /// A protocol probe runs over the channel: the banner of the local target comes back through the server.
    @Test func aProtocolProbeRunsThroughTheChannel() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(.greet("SSH-2.0-fake\r\n", thenClose: false))
            defer { target.stop() }
            let remotePort = try LocalPort.free()
            let spec = try ForwardSpec.parse("127.0.0.1:\(remotePort):127.0.0.1:\(target.port)", kind: .remote)
            try await lab.mux(.forward(spec))
            let master = MasterProbeContext(controlSocket: lab.socket)
            #expect(await HealthProbe(kind: .ssh, master: master).run(spec).outcome == .up)
            guard case .targetDown(let message) = await HealthProbe(kind: .postgres, master: master).run(spec).outcome else {
                Issue.record("an SSH banner is not PostgreSQL")
                return
            }
            #expect(message.contains("answered, but not as PostgreSQL"))
        }
    }

    /// A -L forward's tcp probe asks the server, through the master, to connect to the target: definite both
    /// ways, so no settle window is waited out.
    @Test func aLocalForwardsTargetIsAskedOfTheServer() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(.greet("", thenClose: false))
            let listen = try LocalPort.free()
            let spec = try ForwardSpec.parse("127.0.0.1:\(listen):127.0.0.1:\(target.port)", kind: .local)
            try await lab.mux(.forward(spec))
            let probe = HealthProbe(kind: .tcp, master: MasterProbeContext(controlSocket: lab.socket))
            let start = ContinuousClock.now
            let up = await probe.run(spec)
            #expect(up.outcome == .up)
            #expect(ContinuousClock.now - start < .milliseconds(200), "no 250 ms settle window")
            target.stop()
            guard case .targetDown(let why) = await probe.run(spec).outcome else {
                Issue.record("a closed target is targetDown")
                return
            }
            #expect(why.contains("could not connect to the forward's target 127.0.0.1:\(target.port)"), "\(why)")
            try await lab.mux(.cancel(spec))
            guard case .listenerDown = await probe.run(spec).outcome else {
                Issue.record("a cancelled -L is listenerDown")
                return
            }
        }
    }

    /// The dynamic forwards' transport round trip: answered by the server (open failed) while the master is up.
    @Test func theTransportRoundTripIsAnsweredByTheServer() async throws {
        try await RemoteProbeLab.with { lab in
            let context = MasterProbeContext(controlSocket: lab.socket, transportRefresh: .zero)
            guard case .answered(let rtt) = await context.transportRoundTrip(until: .now + .seconds(2)) else {
                Issue.record("no answer from a live master")
                return
            }
            #expect(rtt < .milliseconds(100))
            #expect(lab.fixture.sshd.log().contains("connect_to 127.0.0.1 port 0: failed."), "the server answered the open")
        }
    }

    /// What fwd sends a master right after its login (MuxClient.nudge): ignore messages through a proxy
    /// connection. The real master passes them to the server unchanged, and the server drops them: the master
    /// and its connection carry on as before.
    @Test func ignoreMessagesReachTheServerAndChangeNothing() async throws {
        try await RemoteProbeLab.with(masterArguments: ["-vvv"]) { lab in
            await MuxClient.nudge(lab.socket, at: [.zero, .milliseconds(1), .milliseconds(2)])
            let context = MasterProbeContext(controlSocket: lab.socket, transportRefresh: .zero)
            guard case .answered = await context.transportRoundTrip(until: .now + .seconds(5)) else {
                Issue.record("the master's transport did not answer after the ignore messages")
                return
            }
            // The master's debug log names each message it passed upstream (channels.c, "down->up: type 2").
            let passed = lab.masterLog().components(separatedBy: "down->up: type 2").count - 1
            #expect(passed == 3, "the master passed \(passed) ignore messages to the server:\n\(lab.masterLog().suffix(2000))")
            #expect(!lab.masterLog().contains("Unsupported"), "the master refused a proxied message")
            try await lab.mux(.check)  // the master is still up (mux throws unless `-O check` exits 0)
        }
    }
}

private extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}

/// A private sshd (the shared fixture) and a ControlMaster to it, both torn down when `with` returns or throws.
struct RemoteProbeLab {
    let fixture: FwdFixture
    let socket: String

    static func with(masterArguments: [String] = [], _ body: (RemoteProbeLab) async throws -> Void) async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            // Short: the master binds SOCK + 17 characters, and a ControlPath may be at most ~90 bytes.
            try FileSystem.makeSocketDirectory(f.paths.controlDirectory)
            let socket = f.paths.controlDirectory + "/rp.sock"
            let master = try await ControlMaster.spawn(
                SSHCommand(executable: "ssh", arguments: masterArguments + ["-F", f.userSSHConfig, "-N", "-M", "-S", socket, "-o", "ControlPersist=no", "lab"]),
                socket: socket, logPath: f.dir + "/master.log")
            let deadline = Date().addingTimeInterval(10)
            while (try? await CommandRunner.run(SSHCommand.mux(socket: socket, .check), timeout: .seconds(5)))?.status != 0 {
                guard Date() < deadline, ProcessTable.isAlive(master.pid) else {
                    await master.stop()
                    throw ChildProcessError(description: "the master did not come up:\n\(master.stderr())")
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            do {
                try await body(RemoteProbeLab(fixture: f, socket: socket))
            } catch {
                await master.stop()
                throw error
            }
            await master.stop()
        }
    }

    func masterLog() -> String {
        (try? String(contentsOfFile: fixture.dir + "/master.log", encoding: .utf8)) ?? ""
    }

    @discardableResult
    func mux(_ operation: SSHCommand.MuxOperation) async throws -> CommandResult {
        let result = try await CommandRunner.run(SSHCommand.mux(socket: socket, operation))
        guard result.status == 0 else {
            throw ChildProcessError(description: "`\(SSHCommand.mux(socket: socket, operation))` exited \(result.status): \(result.stderr)")
        }
        return result
    }

    /// ssh processes of this test using the lab's socket, other than the master (an `ssh -W` probe would be one).
    func sshChildrenBesidesTheMaster() -> [Int32] {
        ProcessTable.children(of: getpid()).filter { pid in
            let argv = ProcessTable.commandLine(of: pid)
            return argv.contains(socket) && !argv.contains("-M")
        }
    }
}
