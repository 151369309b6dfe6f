import Foundation
import Testing
@testable import FwdCore
import FwdLab

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The `remote` probe against a private sshd and a real ControlMaster: `ssh -W` through the master tells a
/// working -R forward from one whose local target refused and from one that is gone.
@Suite struct RemoteProbeTests {
    @Test func remoteProbeTellsUpFromTargetDownFromListenerDown() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(banner: "hello\n")
            let remotePort = try LocalPort.free()
            let spec = try ForwardSpec.parse("127.0.0.1:\(remotePort):127.0.0.1:\(target.port)", kind: .remote)
            try await lab.mux(.forward(spec))
            let probe = HealthProbe(kind: .remote, timeout: 2, controlSocket: lab.socket)

            // The target answers: the first byte proves the round trip, well before the timeout.
            let answered = await probe.run(spec)
            #expect(answered.outcome == .up)
            #expect(answered.latencyMs > 0)
            try lab.expectNoProbeLeftBehind()

            // A target that accepts but stays silent is up once the timeout passes without an EOF.
            target.stopAccepting()
            let silent = await probe.run(spec)
            #expect(silent.outcome == .up)
            #expect(silent.latencyMs >= 1900, "up only once the timeout passed without an EOF")
            try lab.expectNoProbeLeftBehind()

            target.close()
            let refused = await probe.run(spec)
            guard case .targetDown(let message) = refused.outcome else {
                Issue.record("expected targetDown with nothing on the local target, got \(refused.outcome)")
                return
            }
            #expect(message.contains("127.0.0.1:\(remotePort)"))
            try lab.expectNoProbeLeftBehind()

            try await lab.mux(.cancel(spec))
            let gone = await probe.run(spec)
            guard case .listenerDown(let reason) = gone.outcome else {
                Issue.record("expected listenerDown after -O cancel, got \(gone.outcome)")
                return
            }
            #expect(reason.contains("127.0.0.1:\(remotePort)"))
            try lab.expectNoProbeLeftBehind()
        }
    }

    @Test func aServerAllocatedPortIsProbedThroughAllocatedPort() async throws {
        try await RemoteProbeLab.with { lab in
            let target = try TestListener(banner: "hello\n")
            defer { target.close() }
            let spec = try ForwardSpec.parse("127.0.0.1:0:127.0.0.1:\(target.port)", kind: .remote)
            let added = try await lab.mux(.forward(spec))
            let allocated = try #require(Int(added.stdout.trimmingCharacters(in: .whitespacesAndNewlines)),
                                         "-O forward -R 0:… prints the allocated port, got \(String(reflecting: added.stdout))")
            let probe = HealthProbe(kind: .remote, timeout: 2, controlSocket: lab.socket)
            #expect(await probe.run(spec, allocatedPort: allocated).outcome == .up)
            try lab.expectNoProbeLeftBehind()
        }
    }
}

/// A private sshd (the shared fixture) and a ControlMaster to it, both torn down when `with` returns or throws.
private struct RemoteProbeLab {
    let fixture: FwdFixture
    let socket: String

    static func with(_ body: (RemoteProbeLab) async throws -> Void) async throws {
        try await FwdFixture.with { f in
            try f.write(userSSHConfig: f.sshd.clientConfigBlock(alias: "lab"))
            // Short: the master binds SOCK + 17 characters, and a ControlPath may be at most ~90 bytes.
            try FileSystem.makeOwnedDirectory(f.paths.controlDirectory)
            let socket = f.paths.controlDirectory + "/rp.sock"
            let master = try await ControlMaster.spawn(
                SSHCommand(executable: "ssh", arguments: ["-F", f.userSSHConfig, "-N", "-M", "-S", socket, "-o", "ControlPersist=no", "lab"]),
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

    @discardableResult
    func mux(_ operation: SSHCommand.MuxOperation) async throws -> CommandResult {
        let result = try await CommandRunner.run(SSHCommand.mux(socket: socket, operation))
        guard result.status == 0 else {
            throw ChildProcessError(description: "`\(SSHCommand.mux(socket: socket, operation))` exited \(result.status): \(result.stderr)")
        }
        return result
    }

    /// No `ssh -W` for this lab still runs, and no ssh child of the test is left as a zombie.
    func expectNoProbeLeftBehind() throws {
        func leftovers() -> [ChildInfo] {
            childProcesses().filter { ($0.commandLine.contains("-W") && $0.commandLine.contains(socket)) || ($0.state == "Z" && $0.name == "ssh") }
        }
        for _ in 0..<10 where !leftovers().isEmpty { usleep(100_000) }
        #expect(leftovers().isEmpty, "probe processes left behind: \(leftovers())")
    }
}

/// A TCP listener on 127.0.0.1 standing in for the forward's local target. Until `stopAccepting()` it greets
/// every connection with `banner`; after that connections still complete in the kernel's backlog but stay silent.
private final class TestListener: @unchecked Sendable {
    let port: Int
    private let fd: Int32
    private let lock = NSLock()
    private var accepting = true
    private var closed = false
    private var connections: [Int32] = []
    private let acceptorDone = DispatchSemaphore(value: 0)

    init(banner: String) throws {
        (fd, port) = try listeningSocket()
        Thread.detachNewThread { [self] in
            defer { acceptorDone.signal() }
            while lock.withLock({ accepting }) {
                var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                guard poll(&entry, 1, 20) > 0 else { continue }
                let connection = accept(fd, nil, nil)
                guard connection >= 0 else { continue }
                _ = Array(banner.utf8).withUnsafeBytes { send(connection, $0.baseAddress, $0.count, noSignal) }
                lock.withLock { connections.append(connection) }
            }
        }
    }

    func stopAccepting() {
        let wasAccepting = lock.withLock {
            defer { accepting = false }
            return accepting
        }
        if wasAccepting { acceptorDone.wait() }
    }

    func close() {
        stopAccepting()
        lock.withLock {
            guard !closed else { return }
            closed = true
            connections.forEach { _ = systemClose($0) }
            _ = systemClose(fd)
        }
    }

    deinit { close() }
}

private func listeningSocket() throws -> (Int32, Int) {
    let fd = socket(AF_INET, socketStream, 0)
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let rc = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(fd, $0, length) == 0 && listen(fd, 16) == 0 ? getsockname(fd, $0, &length) : -1
        }
    }
    guard rc == 0 else {
        let code = errno
        _ = systemClose(fd)
        throw ChildProcessError(description: "cannot listen on 127.0.0.1: \(String(cString: strerror(code)))")
    }
    return (fd, Int(UInt16(bigEndian: addr.sin_port)))
}

private struct ChildInfo: CustomStringConvertible {
    var pid: Int32
    var name: String
    var state: String
    var commandLine: String
    var description: String { "\(pid) \(state) \(name) \(commandLine)" }
}

/// This process's children, from /proc (Linux); empty elsewhere.
private func childProcesses() -> [ChildInfo] {
    ProcessTable.children(of: getpid()).map { pid in
        ChildInfo(pid: pid, name: FileSystem.read("/proc/\(pid)/comm")?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?",
                  state: ProcessTable.state(of: pid) ?? "?", commandLine: ProcessTable.commandLine(of: pid).joined(separator: " "))
    }
}

#if canImport(Darwin)
private let socketStream = SOCK_STREAM
private let noSignal: Int32 = 0
#else
private let socketStream = Int32(SOCK_STREAM.rawValue)
private let noSignal = Int32(MSG_NOSIGNAL)
#endif

private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Darwin)
    Darwin.close(fd)
    #else
    Glibc.close(fd)
    #endif
}
