using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;
using Parrot.Parrot.Inference;
using Parrot.Tests.Shared;

namespace Parrot.Parrot.Tests.Inference;

/// <summary>
/// The libraries as a user gets them: `dotnet pack` into a folder, then a console program that references
/// Parrot.Parrot from that folder only (third-party packages from this machine's NuGet package folder, so
/// the test needs no network) and whose Program.cs is the README's example, built and run on a tiny model.
/// </summary>
[Category("Packaging")]
public class NuGetPackageTests
{
    private static readonly string[] Libraries = ["Parrot.Tensors", "Parrot.Autograd", "Parrot.Nn", "Parrot.Parrot"];

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "ParrotNative.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException("ParrotNative.sln not found above " + TestContext.CurrentContext.TestDirectory);
    }

    /// <summary>The README's example: the C# block between the readme-example markers.</summary>
    internal static string ReadmeExample(string root)
    {
        var readme = File.ReadAllText(Path.Combine(root, "README.md"));
        int begin = readme.IndexOf("<!-- readme-example: begin -->", StringComparison.Ordinal);
        int end = readme.IndexOf("<!-- readme-example: end -->", StringComparison.Ordinal);
        Assert.That(begin >= 0 && end > begin, "README.md has no readme-example markers");
        var block = readme[begin..end];
        int code = block.IndexOf("```csharp\n", StringComparison.Ordinal);
        int close = block.LastIndexOf("```", StringComparison.Ordinal);
        Assert.That(code >= 0 && close > code, "the README example is not a ```csharp block");
        return block[(code + "```csharp\n".Length)..close];
    }

    private static (int Code, string Stdout, string Stderr) Run(string workingDir, string file, params string[] args) => Run(workingDir, true, file, args);

    /// <param name="isolated">Without NUGET_PACKAGES, which would override the nuget.config's global folder.</param>
    private static (int Code, string Stdout, string Stderr) Run(string workingDir, bool isolated, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = workingDir, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1";
        // The test host's MSBuild settings must not leak into the child builds.
        foreach (var key in new[] { "MSBuildSDKsPath", "MSBuildExtensionsPath", "MSBUILD_EXE_PATH", "DOTNET_HOST_PATH" }) psi.Environment.Remove(key);
        if (isolated) psi.Environment.Remove("NUGET_PACKAGES");
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (!p.WaitForExit(600_000)) { p.Kill(true); Assert.Fail($"{file} {string.Join(' ', args)} did not finish in 10 minutes"); }
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    private static string MachinePackageFolder(string workingDir)
    {
        var (code, stdout, stderr) = Run(workingDir, false, "dotnet", "nuget", "locals", "global-packages", "--list");
        Assert.That(code, Is.EqualTo(0), stderr);
        var line = stdout.Split('\n').Select(l => l.Trim()).First(l => l.StartsWith("global-packages:", StringComparison.Ordinal));
        return line["global-packages:".Length..].Trim();
    }

    [Test]
    public void PackedLibrariesBuildAndRunTheReadmeExample()
    {
        string root = RepositoryRoot();
        // The configuration this test was built in: its libraries are already built there.
        string configuration = new DirectoryInfo(TestContext.CurrentContext.TestDirectory).Parent!.Name;
        string work = TinyModels.TempDir("parrot-nuget-tests");
        try
        {
            string packages = Path.Combine(work, "packages");
            var (code, stdout, stderr) = Run(root, "dotnet", "pack", "ParrotNative.sln", "-c", configuration, "--no-build", "-o", packages, "-v", "quiet", "-nologo");
            Assert.That(code, Is.EqualTo(0), stdout + stderr);

            foreach (var lib in Libraries)
            {
                var nupkg = Path.Combine(packages, $"{lib}.0.1.0.nupkg");
                Assert.That(File.Exists(nupkg), $"{lib}: no package");
                Assert.That(File.Exists(Path.Combine(packages, $"{lib}.0.1.0.snupkg")), $"{lib}: no symbols package");
                using var zip = ZipFile.OpenRead(nupkg);
                var names = zip.Entries.Select(e => e.FullName).ToList();
                Assert.That(names, Does.Contain($"lib/net10.0/{lib}.dll").And.Contain($"lib/net10.0/{lib}.xml").And.Contain("README.md"), lib);
                using var nuspec = zip.GetEntry($"{lib}.nuspec")!.Open();
                var meta = XDocument.Load(nuspec).Root!.Elements().First(e => e.Name.LocalName == "metadata");
                string Field(string name) => meta.Elements().FirstOrDefault(e => e.Name.LocalName == name)?.Value ?? "";
                Assert.That(Field("id"), Is.EqualTo(lib));
                Assert.That(Field("version"), Is.EqualTo("0.1.0"));
                Assert.That(Field("authors"), Is.Not.Empty);
                Assert.That(Field("description"), Is.Not.Empty);
                Assert.That(Field("license"), Is.EqualTo("MIT"));
                Assert.That(Field("readme"), Is.EqualTo("README.md"));
                using var symbols = ZipFile.OpenRead(Path.Combine(packages, $"{lib}.0.1.0.snupkg"));
                Assert.That(symbols.Entries.Select(e => e.FullName), Does.Contain($"lib/net10.0/{lib}.pdb"), lib);
            }

            // A console program as a user writes it, outside the repository.
            string app = Path.Combine(work, "app");
            Directory.CreateDirectory(app);
            File.WriteAllText(Path.Combine(app, "app.csproj"), """
                <Project Sdk="Microsoft.NET.Sdk">
                  <PropertyGroup>
                    <OutputType>Exe</OutputType>
                    <TargetFramework>net10.0</TargetFramework>
                    <ImplicitUsings>enable</ImplicitUsings>
                    <Nullable>enable</Nullable>
                    <TreatWarningsAsErrors>true</TreatWarningsAsErrors>
                  </PropertyGroup>
                  <ItemGroup>
                    <PackageReference Include="Parrot.Parrot" Version="0.1.0" />
                  </ItemGroup>
                </Project>
                """);
            File.WriteAllText(Path.Combine(app, "Program.cs"), ReadmeExample(root));
            // Only the packed folder and this machine's package folder as sources, and a fresh global folder so
            // that no earlier copy of our packages is used.
            var config = new XElement("configuration",
                new XElement("config", new XElement("add", new XAttribute("key", "globalPackagesFolder"), new XAttribute("value", Path.Combine(work, "global")))),
                new XElement("packageSources", new XElement("clear"),
                    new XElement("add", new XAttribute("key", "parrot"), new XAttribute("value", packages)),
                    new XElement("add", new XAttribute("key", "machine"), new XAttribute("value", MachinePackageFolder(root)))));
            File.WriteAllText(Path.Combine(app, "nuget.config"), config.ToString());
            (code, stdout, stderr) = Run(app, "dotnet", "build", "-c", "Release", "-v", "quiet", "-nologo");
            Assert.That(code, Is.EqualTo(0), stdout + stderr);
            Assert.That(Directory.Exists(Path.Combine(work, "global", "parrot.parrot", "0.1.0")), "Parrot.Parrot was not restored from the packed folder");

            string model = TinyModels.WriteParrot(Path.Combine(work, "model"));
            string image = TinyModels.WritePng(Path.Combine(work, "photo.png"), 200, 40, 40);
            (code, stdout, stderr) = Run(app, "dotnet", Path.Combine(app, "bin", "Release", "net10.0", "app.dll"), model, image);
            Assert.That(code, Is.EqualTo(0), stdout + stderr);
            Assert.That(stdout, Is.EqualTo(ExpectedOutput(model, image)));
        }
        finally
        {
            try { Directory.Delete(work, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>What the README example prints, computed here through the same API.</summary>
    private static string ExpectedOutput(string modelDir, string image)
    {
        var o = new StringBuilder();
        using var model = ParrotModel.Load(modelDir);
        var options = new GenerationOptions { MaxNewTokens = 64 };
        o.Append(model.Ask("What is in this picture?", image, options)).Append('\n');
        var sampling = options with { Temperature = 0.7, TopP = 0.9, Seed = 42, StopStrings = ["\n\n"] };
        o.Append(model.Ask("Что изображено на картинке?", image, sampling)).Append('\n');
        var answers = model.Ask([new ParrotQuestion("Describe the colours."), new ParrotQuestion("这是什么?")], options);
        o.Append(string.Join(" | ", answers)).Append('\n');
        var chat = model.StartChat();
        o.Append(chat.Send("Describe the image in one sentence.", image, options)).Append('\n');
        o.Append(chat.Send("Agora em português, por favor.", options: options)).Append('\n');
        return o.ToString();
    }
}
