import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// Whether the fault tests can run: network namespaces, veth pairs and iptables need root.
let isRoot = geteuid() == 0

/// FWD_LONG_TESTS=1 runs the long versions (a minute of delay, 1000 soak cycles, 10 minutes of concurrency).
let longTests = ProcessInfo.processInfo.environment["FWD_LONG_TESTS"] == "1"

struct CommandFailed: Error, CustomStringConvertible {
    var description: String
}

/// Runs a short command (argv, no shell) and returns its output; throws with the output when it fails.
@discardableResult
func run(_ argv: [String], timeout: Double = 30) throws -> String {
    let (exit, output) = try ChildProcess.run(argv, timeout: timeout)
    guard exit == .exited(0) else {
        throw CommandFailed(description: "`\(argv.joined(separator: " "))` failed (\(exit)): \(output)")
    }
    return output
}

/// Runs `body` on a fresh thread that has joined the network namespace `name`; sockets it creates live there.
/// Network namespaces are per thread on Linux, so the rest of the test process stays where it was.
func inNamespace<T: Sendable>(_ name: String, _ body: @escaping @Sendable () throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    let thread = Thread {
        defer { done.signal() }
        let fd = open("/var/run/netns/\(name)", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            box.result = .failure(CommandFailed(description: "no network namespace \(name)"))
            return
        }
        defer { close(fd) }
        guard setNetworkNamespace(fd) == 0 else {
            box.result = .failure(CommandFailed(description: "setns(\(name)): \(String(cString: strerror(errno)))"))
            return
        }
        box.result = Result { try body() }
    }
    thread.start()
    done.wait()
    return try box.result!.get()
}

private final class ResultBox<T>: @unchecked Sendable {
    var result: Result<T, any Error>?
}

private let setnsFunction: (@convention(c) (Int32, Int32) -> Int32)? = {
    guard let symbol = dlsym(nil, "setns") else { return nil }
    return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
}()

private func setNetworkNamespace(_ fd: Int32) -> Int32 {
    let cloneNewNet: Int32 = 0x4000_0000
    return setnsFunction?(fd, cloneNewNet) ?? -1
}

/// Three network namespaces: C (runs fwd), A (runs sshd), B (services only A reaches). C–A and A–B are
/// veth pairs (or, for delay tests, a userspace delay relay between two TUN devices, because this kernel has
/// no sch_netem). Addresses come from 198.18.0.0/15; nothing touches the root namespace's interfaces.
/// Names resolve through /etc/netns/NS/hosts, which `ip netns exec` mounts over /etc/hosts.
final class Topology: @unchecked Sendable {
    enum Link {
        case veth
        /// One-way delay of every packet in both directions: mean ± jitter (uniform), in order.
        case delayed(meanMs: Double, jitterMs: Double)
    }

    static let prefix = "fwdf"
    static let clientAddress = "198.18.1.1"
    static let serverAddress = "198.18.1.2"
    static let serverInnerAddress = "198.18.2.1"
    static let serviceAddress = "198.18.2.2"
    static let serverName = "sshd-a"
    static let serviceName = "svc-b"

    let id: String
    var c: String { id + "-c" }
    var a: String { id + "-a" }
    var b: String { id + "-b" }
    /// D: a machine on C's LAN (`addLAN`), for tunnels C shares with its network.
    var d: String { id + "-d" }
    var all: [String] { [c, a, b] + (hasLAN ? [d] : []) }
    private(set) var hasLAN = false
    static let lanClientSide = "198.18.3.1"
    static let lanPeerAddress = "198.18.3.2"
    private(set) var delay: DelayLink?
    /// The interface in A that faces C (rules that cut C off match it).
    private(set) var serverInterface = "va"

    /// Per test process: a counter for unique names, and whether leftovers were already cleaned.
    private final class RunState: @unchecked Sendable {
        let lock = NSLock()
        var next = 0
        var cleanedLeftovers = false
    }

    private static let runState = RunState()

    init(link: Link = .veth) throws {
        let state = Self.runState
        let n = state.lock.withLock {
            state.next += 1
            return state.next
        }
        id = "\(Self.prefix)\(getpid())n\(n)"
        Self.removeLeftoversOnce()
        do {
            try build(link)
        } catch {
            tearDown()
            throw error
        }
    }

    private func build(_ link: Link) throws {
        for ns in all { try run(["ip", "netns", "add", ns]) }
        for ns in all {
            try FileSystem.makePrivateDirectory("/etc/netns/\(ns)")
            chmod("/etc/netns/\(ns)", 0o755)
        }
        try write("127.0.0.1 localhost\n\(Self.serverAddress) \(Self.serverName)\n", to: "/etc/netns/\(c)/hosts")
        try write("127.0.0.1 localhost\n\(Self.serviceAddress) \(Self.serviceName)\n\(Self.serverInnerAddress) \(Self.serverName)\n",
                  to: "/etc/netns/\(a)/hosts")
        try write("127.0.0.1 localhost\n\(Self.serverInnerAddress) \(Self.serverName)\n", to: "/etc/netns/\(b)/hosts")
        for ns in all { try run(["ip", "-n", ns, "link", "set", "lo", "up"]) }

        switch link {
        case .veth:
            // Created inside C with its peer inside A: the pair never exists in the root namespace.
            try run(["ip", "-n", c, "link", "add", "vc", "type", "veth", "peer", "name", "va", "netns", a])
            try run(["ip", "-n", c, "addr", "add", "\(Self.clientAddress)/24", "dev", "vc"])
            try run(["ip", "-n", a, "addr", "add", "\(Self.serverAddress)/24", "dev", "va"])
            try run(["ip", "-n", c, "link", "set", "vc", "up"])
            try run(["ip", "-n", a, "link", "set", "va", "up"])
        case .delayed(let mean, let jitter):
            delay = try DelayLink(client: c, server: a, meanMs: mean, jitterMs: jitter)
            serverInterface = "tuna"
        }
        try run(["ip", "-n", a, "link", "add", "vab", "type", "veth", "peer", "name", "vb", "netns", b])
        try run(["ip", "-n", a, "addr", "add", "\(Self.serverInnerAddress)/24", "dev", "vab"])
        try run(["ip", "-n", b, "addr", "add", "\(Self.serviceAddress)/24", "dev", "vb"])
        try run(["ip", "-n", a, "link", "set", "vab", "up"])
        try run(["ip", "-n", b, "link", "set", "vb", "up"])
        // A new namespace does not forward (ip_forward 0) and C has no route to 198.18.2.0/24: C cannot reach B.
        try run(["ip", "netns", "exec", a, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    }

    /// Adds namespace D on a LAN of its own with C (198.18.3.0/24): C is 198.18.3.1 there, D 198.18.3.2. D
    /// reaches nothing else.
    func addLAN() throws {
        try run(["ip", "netns", "add", d])
        hasLAN = true
        try run(["ip", "-n", d, "link", "set", "lo", "up"])
        try run(["ip", "-n", c, "link", "add", "vcl", "type", "veth", "peer", "name", "vd", "netns", d])
        try run(["ip", "-n", c, "addr", "add", "\(Self.lanClientSide)/24", "dev", "vcl"])
        try run(["ip", "-n", d, "addr", "add", "\(Self.lanPeerAddress)/24", "dev", "vd"])
        try run(["ip", "-n", c, "link", "set", "vcl", "up"])
        try run(["ip", "-n", d, "link", "set", "vd", "up"])
    }

    /// argv that runs `argv` inside namespace `ns` (with its /etc/netns files mounted).
    func exec(_ ns: String, _ argv: [String]) -> [String] { ["ip", "netns", "exec", ns] + argv }

    /// Silent loss between C and A: A drops every packet from or to C, answering nothing.
    func cutClientOff() throws {
        try run(exec(a, ["iptables", "-w", "-I", "INPUT", "-i", serverInterface, "-j", "DROP"]))
        try run(exec(a, ["iptables", "-w", "-I", "OUTPUT", "-o", serverInterface, "-j", "DROP"]))
    }

    func reconnectClient() throws {
        try run(exec(a, ["iptables", "-w", "-D", "INPUT", "-i", serverInterface, "-j", "DROP"]))
        try run(exec(a, ["iptables", "-w", "-D", "OUTPUT", "-o", serverInterface, "-j", "DROP"]))
    }

    /// Keeps dropping one TCP connection (client port `port` to sshd's `sshPort`) while letting new ones through:
    /// the server never hears that this session's client is gone and keeps its listeners until ClientAlive fires.
    func blackholeConnection(clientPort port: Int, sshPort: Int = 22) throws {
        try run(exec(a, ["iptables", "-w", "-I", "INPUT", "-i", serverInterface, "-p", "tcp", "--sport", "\(port)", "--dport", "\(sshPort)", "-j", "DROP"]))
        try run(exec(a, ["iptables", "-w", "-I", "OUTPUT", "-o", serverInterface, "-p", "tcp", "--sport", "\(sshPort)", "--dport", "\(port)", "-j", "DROP"]))
    }

    /// Client-side ports of the established TCP connections to A's sshd, as A sees them.
    func sshClientPorts(sshPort: Int = 22) throws -> [Int] {
        let out = try run(exec(a, ["ss", "-Htn", "state", "established", "( sport = :\(sshPort) )"]))
        return out.split(separator: "\n").compactMap { line in
            line.split(separator: " ").last.flatMap { $0.split(separator: ":").last }.flatMap { Int($0) }
        }
    }

    /// Kills everything still running in the namespaces, deletes them and their /etc/netns files. Idempotent.
    func tearDown() {
        delay?.stop()
        Self.remove(all)
    }

    private static func remove(_ names: [String]) {
        for ns in names {
            for pid in ((try? run(["ip", "netns", "pids", ns])) ?? "").split(whereSeparator: \.isNewline).compactMap({ Int32($0) }) {
                kill(pid, SIGKILL)
            }
        }
        for ns in names {
            _ = try? ChildProcess.run(["ip", "netns", "del", ns])
            try? FileManager.default.removeItem(atPath: "/etc/netns/\(ns)")
        }
        if (try? FileManager.default.contentsOfDirectory(atPath: "/etc/netns"))?.isEmpty == true {
            try? FileManager.default.removeItem(atPath: "/etc/netns")
        }
    }

    /// Namespaces (and fixture directories) of an earlier run of these tests that crashed: their name holds
    /// the pid of the test process, which is gone.
    private static func removeLeftoversOnce() {
        let state = runState
        let first = state.lock.withLock {
            defer { state.cleanedLeftovers = true }
            return !state.cleanedLeftovers
        }
        guard first else { return }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: "/var/run/netns")) ?? [])
            + ((try? FileManager.default.contentsOfDirectory(atPath: "/etc/netns")) ?? [])
        let stale = Set(names.filter { isStale($0) })
        if !stale.isEmpty {
            print("fault tests: removing \(stale.count) namespace(s) left by an earlier crashed run: \(stale.sorted().joined(separator: " "))")
            remove(Array(stale))
        }
        let tmp = NSTemporaryDirectory()
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where isStale(entry) {
            let dir = (tmp as NSString).appendingPathComponent(entry)
            try? FileManager.default.removeItem(atPath: FwdPaths.controlDirectory(forState: dir + "/state", environment: ProcessInfo.processInfo.environment))
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// `fwdf<pid>n…` whose pid no longer runs.
    static func isStale(_ name: String) -> Bool {
        guard name.hasPrefix(prefix) else { return false }
        let digits = name.dropFirst(prefix.count).prefix { $0.isNumber }
        guard let pid = Int32(digits), pid != getpid() else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

    private func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o644)
    }
}
