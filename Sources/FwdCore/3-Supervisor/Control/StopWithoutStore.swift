import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension Control {
    /// `fwd down --all` when the state database cannot be read (docs/reliability.md, "State database"): what
    /// runs is found without its rows. A running supervisor is asked to stop, which takes each of its masters
    /// down; then each master fwd started that is still listening in the control directory (left by a
    /// supervisor that was killed) is told to exit. A master is fwd's when its command line binds that very
    /// socket with `-S`: a plain `ssh HOST` that became a master through the fragment's `ControlMaster auto` is
    /// the user's session, and is left alone. Returns one line per thing stopped, and whether the supervisor
    /// refused to stop.
    package static func stopWithoutStore(_ paths: FwdPaths) async -> (lines: [String], failed: Bool) {
        var done: [String] = []
        var failed = false
        if let pid = runningPID(paths) {
            // The supervisor answers once its masters are down and its lock is released.
            do {
                try request(ControlRequest(op: .stop), paths: paths, timeout: 60)
                done.append("stopped the supervisor (pid \(pid)) and its masters")
            } catch {
                done.append("the supervisor (pid \(pid)) did not stop: \(error)")
                failed = true
            }
        }
        let dir = paths.controlDirectory
        var st = stat()
        guard lstat(dir, &st) == 0, st.st_mode & S_IFMT == S_IFDIR, st.st_uid == geteuid() else { return (done, failed) }
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
        for name in names where "\(dir)/\(name)" != paths.supervisorSocket && !name.hasPrefix(AskpassRelay.socketPrefix) {
            let socket = "\(dir)/\(name)"
            guard lstat(socket, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK,
                  let pid = await masterPID(socket, ssh: paths.ssh), isFwdMaster(pid, socket: socket) else { continue }
            let exit = try? await CommandRunner.run(SSHCommand.mux(ssh: paths.ssh, socket: socket, .exit), timeout: .seconds(5))
            if exit?.status == 0 {
                done.append("ended the ssh master (pid \(pid)) on \(socket)")
            } else {
                ProcessTable.terminate(pid)
                done.append("stopped the ssh master (pid \(pid)) on \(socket)")
            }
        }
        return (done, failed)
    }

    /// The pid `ssh -O check` reports ("Master running (pid=1234)"), or nil when nothing answers.
    private static func masterPID(_ socket: String, ssh: String) async -> Int32? {
        guard let result = try? await CommandRunner.run(SSHCommand.mux(ssh: ssh, socket: socket, .check), timeout: .seconds(5)),
              result.status == 0, let range = result.stderr.range(of: "pid=") else { return nil }
        return Int32(result.stderr[range.upperBound...].prefix { $0.isNumber })
    }

    /// Whether `pid` is an ssh that fwd started as the master of `socket` (`SSHCommand.master`: `-M -S SOCKET`).
    static func isFwdMaster(_ pid: Int32, socket: String) -> Bool {
        let argv = ProcessTable.commandLine(of: pid)
        guard argv.first?.hasSuffix("ssh") ?? false, argv.contains("-M") else { return false }
        return zip(argv, argv.dropFirst()).contains { $0 == "-S" && $1 == socket }
    }
}
