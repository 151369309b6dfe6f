import Foundation
import Testing
@testable import FwdCore

/// The executor (`HostRunner`) against a fake master: a stand-in `ssh` that listens on the control socket,
/// greets (MUX_MSG_HELLO) and then never answers a request, as a hung master does. The executor must keep
/// serving other events while a forward request to it is stuck, and stop must cancel its timers and tasks.
@Suite(.serialized) struct HostRunnerTests {
    /// The fake `ssh -N -M -S SOCKET …`: python3 (standard library only), exits on SIGTERM.
    static let fakeMaster = #"""
    #!/usr/bin/env python3
    import os, signal, socket, sys, threading
    args = sys.argv[1:]
    path = args[args.index("-S") + 1]
    signal.signal(signal.SIGTERM, lambda *_: (os.path.exists(path) and os.unlink(path), os._exit(0)))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path + ".tmp"); s.listen(16); os.rename(path + ".tmp", path)
    hello = (8).to_bytes(4, "big") + (1).to_bytes(4, "big") + (4).to_bytes(4, "big")
    def serve(c):
        c.sendall(hello)
        while c.recv(4096): pass   # reads every request, answers none
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
    """#

    struct Lab {
        let dir: String
        let paths: FwdPaths
        let store: Store
        let writer: StoreWriter

        init() throws {
            dir = NSTemporaryDirectory() + "fwd-runner-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let ssh = dir + "/fake-ssh"
            try HostRunnerTests.fakeMaster.write(toFile: ssh, atomically: true, encoding: .utf8)
            chmod(ssh, 0o755)
            paths = FwdPaths(config: dir + "/fwd.toml", stateDirectory: dir + "/state", userSSHConfig: dir + "/ssh_config",
                             controlDirectory: "/tmp/fwd-rt-\(UUID().uuidString.prefix(6))", ssh: ssh)
            try FileSystem.makePrivateDirectory(paths.stateDirectory)
            store = try Store(path: paths.database)
            writer = StoreWriter(store: store)
        }

        func runner(probeInterval: Double = 0.2) -> HostRunner {
            var options = SupervisorOptions()
            options.probeInterval = probeInterval
            return HostRunner(host: "office", entry: nil, paths: paths, writer: writer, options: options)
        }

        func state(_ name: String) -> TunnelState? { try? store.tunnel(name)?.state }

        func fakeMasters() -> [Int32] {
            ProcessTable.allPids().filter { ProcessTable.commandLine(of: $0).contains { $0.hasSuffix("/fake-ssh") } && ProcessTable.commandLine(of: $0).contains(paths.controlSocket(for: "office")) }
        }
    }

    private static func tunnel(_ name: String, _ spec: String) -> Tunnel {
        Tunnel(name: name, host: "office", forwards: [try! ForwardSpec.parse(spec, kind: .local)], probe: nil)
    }

    private static func elapsed(_ body: () async -> Void) async -> Duration {
        let start = ContinuousClock.now
        await body()
        return ContinuousClock.now - start
    }

    @Test func aStuckForwardRequestHoldsUpNoOtherEventAndStopIsPrompt() async throws {
        let lab = try Lab()
        let runner = lab.runner()
        // The master comes up, then the forward request hangs (the fake never answers; the request waits 10 s).
        let wiki = Self.tunnel("wiki", "18080:127.0.0.1:80")
        try lab.store.setDesired(.up, tunnels: [wiki])
        _ = runner.submit([wiki], retry: [])
        var ready = false
        for _ in 0..<100 where !ready {
            try await Task.sleep(for: .milliseconds(20))
            ready = FileSystem.exists(lab.paths.controlSocket(for: "office"))
        }
        #expect(ready, "the fake master never made its socket")
        try await Task.sleep(for: .milliseconds(200))
        #expect(await runner.liveWork.tasks > 0)
        // Another event goes through the loop at once: a path check answers without waiting for the forward.
        var line = ""
        let checked = await Self.elapsed { line = await runner.pathCheck(.requested) }
        #expect(checked < .milliseconds(500), "a path check waited \(checked) behind a stuck forward request")
        #expect(line.hasPrefix("office:"), "\(line)")
        // And so does the stop: the master is ended (SIGTERM) and the request's wait ends with it.
        let stopped = await Self.elapsed { await runner.stop() }
        #expect(stopped < .seconds(3), "stop waited \(stopped)")
        #expect(lab.fakeMasters().isEmpty, "the fake master still runs")
        await lab.writer.flush()
        #expect(lab.state("wiki") == .down)
        // Stop cancelled every timer (the probe tick, a retry) and every task of the master's generation.
        #expect(await runner.liveWork.timers == 0)
        var left = await runner.liveWork.tasks
        for _ in 0..<50 where left > 0 {
            try await Task.sleep(for: .milliseconds(20))
            left = await runner.liveWork.tasks
        }
        #expect(left == 0, "\(left) tasks outlived the stop")
        runner.finish()
    }

    @Test func aStopDuringTheSpawnEndsTheMasterThatStarted() async throws {
        let lab = try Lab()
        let runner = lab.runner()
        let db = Self.tunnel("db", "15432:127.0.0.1:5432")
        try lab.store.setDesired(.up, tunnels: [db])
        _ = runner.submit([db], retry: [])
        // At once, before the spawned process is adopted: the stop must still end it.
        await runner.stop()
        #expect(lab.fakeMasters().isEmpty, "a master spawned during the stop was left running")
        runner.finish()
    }
}
