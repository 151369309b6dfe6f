import ArgumentParser
import Foundation
import FwdCore

struct DaemonCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "daemon",
        abstract: "Run the supervisor in the foreground (for systemd or launchd).",
        discussion: """
        Brings up the tunnels that `fwd up` asked for, keeps them up, and takes every master down on SIGTERM. \
        `fwd up` starts one in the background when none runs; only one runs per state directory.
        """
    )

    @Flag(help: "Ask the running supervisor to stop, and wait until it has.")
    var stop = false

    @Flag(help: .hidden)
    var onDemand = false

    @Option(help: .hidden)
    var readyFd: Int32?

    func run() async throws {
        let paths = Context.current().paths
        if stop {
            // The supervisor answers once its masters are down and its lock is released.
            try Control.request(ControlRequest(op: .stop), paths: paths, timeout: 60)
            return
        }
        do {
            try await SupervisorService(paths: paths, mode: .daemon, options: .withAskpass(), onDemand: onDemand, readyFD: readyFd).run()
        } catch let error as StoreError where error.isUnusableDatabase {
            // Starting again cannot help until the user moves the database aside: the service unit does not
            // restart on this status (docs/reliability.md, "State database").
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode(Self.unusableDatabaseStatus)
        }
    }

    /// EX_CONFIG from sysexits.h: the supervisor's own state cannot be used. fwd.service has
    /// RestartPreventExitStatus=78.
    static let unusableDatabaseStatus: Int32 = 78
}
