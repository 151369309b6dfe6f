/// fwd's version: the one place it is written. `fwd --version` prints it, and scripts/install,
/// scripts/package-deb and scripts/generate-manual read it from the binary they built.
public enum FwdVersion {
    public static let current = "0.1.0"
}
