import Foundation
import Testing
@testable import FwdCore

/// The parts of `fwd doctor` that need no processes; the integration tests seed real problems.
@Suite struct DoctorUnitTests {
    @Test func parsesOpenSSHVersions() {
        #expect(Doctor.openSSHVersion("OpenSSH_9.2p1 Debian-2+deb12u3, OpenSSL 3.0.15 3 Sep 2024")! == (9, 2))
        #expect(Doctor.openSSHVersion("OpenSSH_7.4p1, LibreSSL 2.6.5")! == (7, 4))
        #expect(Doctor.openSSHVersion("Sun_SSH_1.1") == nil)
        #expect(Doctor.openSSHVersion("OpenSSH_7.4p1")! < Doctor.minimumSSH)
    }

    @Test func controlPathLengthFitsForTheDefaultDirectory() {
        let paths = FwdPaths(config: "/c", stateDirectory: "/home/someone-with-a-long-name/.local/state/fwd", userSSHConfig: "/u")
        #expect(Doctor(paths: paths).controlPathLength().status == .ok)
        let long = FwdPaths(config: "/c", stateDirectory: "/s", userSSHConfig: "/u", controlDirectory: "/tmp/" + String(repeating: "x", count: 80))
        #expect(Doctor(paths: long).controlPathLength().status == .problem)
    }
}
