# Homebrew formula for fwd.
#
# UNTESTED: fwd's CI runs on Debian, with neither macOS nor Homebrew, so this formula has never been run by
# `brew install`, `brew test` or `brew audit`. It installs the same files as scripts/install (binary,
# templates, bash/zsh/fish completions, man page) into Homebrew's standard places.
#
# Before publishing it: fwd has no public repository or release tag yet, so OWNER, `url` and `sha256` name a
# release that does not exist. Point them at the source tarball of the tag whose FwdVersion.current
# (Sources/FwdCLI/Version.swift) is the version in the URL; the test below fails if the two differ.
# fwd has not chosen a license either; add `license "..."` once it has.
class Fwd < Formula
  desc "Named SSH port forwards you bring up with one command"
  homepage "https://github.com/OWNER/fwd"
  url "https://github.com/OWNER/fwd/archive/refs/tags/v0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"
  head "https://github.com/OWNER/fwd.git", branch: "main"

  # Package.swift needs Swift 6.2: Xcode 26 on macOS, Homebrew's swift on Linux.
  depends_on xcode: ["26.0", :build]
  uses_from_macos "swift" => :build
  uses_from_macos "sqlite"

  def install
    args = ["--disable-sandbox", "--configuration", "release"]
    # Linux: link the Swift runtime statically, as scripts/install does, so the binary outlives the toolchain.
    args += ["--static-swift-stdlib", "--disable-local-rpath"] if OS.linux?
    system "swift", "build", *args, "--product", "fwd"
    system "swift", "build", *args, "--product", "generate-manual"
    bindir = Utils.safe_popen_read("swift", "build", *args, "--show-bin-path").chomp

    bin.install "#{bindir}/fwd"
    # fwd finds its presets and unit templates in ../share/fwd/templates beside its (resolved) binary.
    pkgshare.install "templates"
    bash_completion.install "completions/fwd.bash" => "fwd"
    zsh_completion.install "completions/_fwd"
    fish_completion.install "completions/fwd.fish"

    # As scripts/generate-manual does: the page from fwd's own help, its footer naming the version.
    system "#{bindir}/generate-manual", bin/"fwd", "--date", "2026-01-01", "--output-directory", buildpath/"man"
    inreplace buildpath/"man/fwd.1", /^\.Os$/, ".Os fwd #{version}"
    man1.install buildpath/"man/fwd.1"
  end

  test do
    assert_equal version.to_s, shell_output("#{bin}/fwd --version").strip
    # The templates are found from the installed binary alone.
    ENV.delete "FWD_TEMPLATES"
    assert_match "postgres", shell_output("#{bin}/fwd templates")
    (testpath/"fwd.toml").write <<~TOML
      [tunnels.wiki]
      host = "office"
      local = "8080:wiki.lan:80"
    TOML
    ENV["FWD_CONFIG"] = testpath/"fwd.toml"
    ENV["FWD_STATE_DIR"] = testpath/"state"
    assert_match "wiki", shell_output("#{bin}/fwd list")
  end
end
