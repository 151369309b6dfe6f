import Foundation
@testable import FwdCore
#if canImport(Glibc)
import Glibc
#endif

/// A stand-in for the desktop's notification server: a python3-dbus service that owns
/// org.freedesktop.Notifications on a private session bus (dbus-run-session) and appends each Notify it gets to a
/// file as a JSON line. nil, with what is missing printed, when the tools are not installed.
final class NotificationStandIn: @unchecked Sendable {
    let address: String
    let log: String
    private let server: ChildProcess

    static let python = "/usr/bin/python3"

    static func start(in dir: String) throws -> NotificationStandIn? {
        guard let runSession = Tool.path("dbus-run-session"), Tool.path("gdbus") != nil,
              (try? ChildProcess.run([python, "-c", "import dbus, dbus.service, dbus.mainloop.glib; from gi.repository import GLib"]).exit) == .exited(0) else {
            print("skipped the desktop notification test: needs dbus-run-session (dbus-daemon), gdbus (libglib2.0-bin), python3-dbus and python3-gi")
            return nil
        }
        let script = dir + "/notifications.py", log = dir + "/notify.log", addressFile = dir + "/bus"
        try FileSystem.writeAtomically("""
        import dbus, dbus.service, dbus.mainloop.glib, json, os, sys, time
        from gi.repository import GLib
        dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)
        class Notifications(dbus.service.Object):
            @dbus.service.method("org.freedesktop.Notifications", in_signature="susssasa{sv}i", out_signature="u")
            def Notify(self, app, replaces, icon, summary, body, actions, hints, timeout):
                with open(sys.argv[1], "a") as f:
                    f.write(json.dumps({"time": time.time(), "app": str(app), "summary": str(summary), "body": str(body)}) + "\\n")
                return 1
        bus = dbus.SessionBus()
        name = dbus.service.BusName("org.freedesktop.Notifications", bus)
        Notifications(bus, "/org/freedesktop/Notifications")
        with open(sys.argv[2] + ".tmp", "w") as f:
            f.write(os.environ["DBUS_SESSION_BUS_ADDRESS"])
        os.rename(sys.argv[2] + ".tmp", sys.argv[2])
        GLib.MainLoop().run()
        """, to: script)
        let server = try ChildProcess([runSession, "--", python, script, log, addressFile], outputPath: dir + "/notify-server.log")
        let ready = Date().addingTimeInterval(10)
        while FileSystem.read(addressFile) == nil, Date() < ready { usleep(50_000) }
        guard let address = FileSystem.read(addressFile) else {
            Self.end(server)
            throw ChildProcessError(description: "the stand-in did not start: \(FileSystem.read(dir + "/notify-server.log") ?? "")")
        }
        return NotificationStandIn(address: address, log: log, server: server)
    }

    private init(address: String, log: String, server: ChildProcess) {
        self.address = address
        self.log = log
        self.server = server
    }

    /// Every Notify received so far, oldest first.
    var notes: [[String: Any]] {
        (FileSystem.read(log) ?? "").split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The first Notify whose summary contains `text`, waited for up to `timeout` seconds.
    func wait(forSummary text: String, timeout: Double) -> [String: Any]? {
        let deadline = Date().addingTimeInterval(timeout)
        repeat {
            if let note = notes.first(where: { ($0["summary"] as? String)?.contains(text) == true }) { return note }
            usleep(100_000)
        } while Date() < deadline
        return nil
    }

    func stop() { Self.end(server) }

    /// Its own process group: the bus daemon and the stand-in go with dbus-run-session.
    private static func end(_ server: ChildProcess) {
        sendSignal(-server.pid, SIGKILL)
        server.kill()
    }
}
