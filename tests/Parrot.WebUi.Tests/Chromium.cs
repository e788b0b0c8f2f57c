using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Parrot.WebUi.Tests;

/// <summary>
/// Debian's headless <c>chromium</c>, driven over the Chrome DevTools Protocol (a WebSocket; no npm, no driver).
/// Launched on an ephemeral debugging port with a throw-away profile; the port is read from DevToolsActivePort.
/// </summary>
internal sealed class Chromium : IAsyncDisposable
{
    private readonly Process _process;
    private readonly string _profile;
    private readonly int _port;

    private Chromium(Process process, string profile, int port)
    {
        _process = process;
        _profile = profile;
        _port = port;
    }

    /// <summary>The browser executable: $PARROT_CHROMIUM, else chromium / chromium-browser / google-chrome on the PATH; null when none.</summary>
    public static string? Find()
    {
        if (Environment.GetEnvironmentVariable("PARROT_CHROMIUM") is { Length: > 0 } env) return File.Exists(env) ? env : null;
        var path = Environment.GetEnvironmentVariable("PATH") ?? "";
        foreach (var name in new[] { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" })
            foreach (var dir in path.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
            {
                var candidate = Path.Combine(dir, name);
                if (File.Exists(candidate)) return candidate;
            }
        return null;
    }

    public static async Task<Chromium> LaunchAsync(string executable, int width, int height)
    {
        var profile = Path.Combine(Path.GetTempPath(), "parrot-webui-chromium", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(profile);
        var psi = new ProcessStartInfo(executable) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in new[]
        {
            "--headless=new", "--remote-debugging-port=0", $"--user-data-dir={profile}",
            // Root in a container has no user namespaces for the sandbox; the page is our own, on loopback.
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--mute-audio", "--hide-scrollbars", "--lang=en-US", $"--window-size={width},{height}", "about:blank",
        }) psi.ArgumentList.Add(a);
        var process = Process.Start(psi) ?? throw new InvalidOperationException($"could not start {executable}");
        var log = new StringBuilder();
        process.OutputDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { lock (log) log.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();

        var portFile = Path.Combine(profile, "DevToolsActivePort");
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (File.Exists(portFile) && File.ReadAllLines(portFile) is [var first, ..] && int.TryParse(first, out int port) && port > 0)
                return new Chromium(process, profile, port);
            if (process.HasExited || clock.Elapsed > TimeSpan.FromSeconds(30))
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                string output;
                lock (log) output = log.ToString();
                throw new InvalidOperationException($"{executable} did not open its DevTools port within 30 s (exit: {(process.HasExited ? process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "killed")}):\n{output}");
            }
            await Task.Delay(50);
        }
    }

    /// <summary>A new tab, connected.</summary>
    public async Task<CdpPage> NewPageAsync()
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(20) };
        using var response = await http.PutAsync($"http://127.0.0.1:{_port}/json/new?about:blank", null);
        response.EnsureSuccessStatusCode();
        var target = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        var ws = new ClientWebSocket();
        ws.Options.KeepAliveInterval = TimeSpan.Zero;
        await ws.ConnectAsync(new Uri(target.GetProperty("webSocketDebuggerUrl").GetString()!), CancellationToken.None);
        var page = new CdpPage(ws);
        await page.SendAsync("Runtime.enable");
        await page.SendAsync("Page.enable");
        return page;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        catch (Exception e) when (e is InvalidOperationException or TimeoutException) { }
        _process.Dispose();
        try { Directory.Delete(_profile, recursive: true); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}

/// <summary>One tab over CDP: commands with replies, page exceptions recorded, and the few user actions the tests need.</summary>
internal sealed class CdpPage : IAsyncDisposable
{
    private readonly ClientWebSocket _ws;
    private readonly ConcurrentDictionary<int, TaskCompletionSource<JsonElement>> _pending = new();
    private readonly SemaphoreSlim _sendLock = new(1, 1);
    private readonly Task _receiver;
    private int _nextId;

    public CdpPage(ClientWebSocket ws)
    {
        _ws = ws;
        _receiver = Task.Run(ReceiveLoop);
    }

    /// <summary>Uncaught JavaScript exceptions of the page, as the DevTools report them.</summary>
    public ConcurrentQueue<string> Exceptions { get; } = new();

    public async Task<JsonElement> SendAsync(string method, JsonObject? parameters = null, TimeSpan? timeout = null)
    {
        int id = Interlocked.Increment(ref _nextId);
        var tcs = new TaskCompletionSource<JsonElement>(TaskCreationOptions.RunContinuationsAsynchronously);
        _pending[id] = tcs;
        var message = new JsonObject { ["id"] = id, ["method"] = method, ["params"] = parameters ?? new JsonObject() };
        var bytes = Encoding.UTF8.GetBytes(message.ToJsonString());
        await _sendLock.WaitAsync();
        try { await _ws.SendAsync(bytes, WebSocketMessageType.Text, true, CancellationToken.None); }
        finally { _sendLock.Release(); }
        try { return await tcs.Task.WaitAsync(timeout ?? TimeSpan.FromSeconds(30)); }
        catch (TimeoutException) { throw new TimeoutException($"CDP {method} got no reply"); }
        finally { _pending.TryRemove(id, out _); }
    }

    private async Task ReceiveLoop()
    {
        var buffer = new byte[1 << 16];
        var message = new MemoryStream();
        try
        {
            while (_ws.State == WebSocketState.Open)
            {
                var r = await _ws.ReceiveAsync(buffer, CancellationToken.None);
                if (r.MessageType == WebSocketMessageType.Close) break;
                message.Write(buffer, 0, r.Count);
                if (!r.EndOfMessage) continue;
                var doc = JsonDocument.Parse(message.ToArray()).RootElement.Clone();
                message.SetLength(0);
                if (doc.TryGetProperty("id", out var idEl))
                {
                    if (_pending.TryGetValue(idEl.GetInt32(), out var tcs))
                    {
                        if (doc.TryGetProperty("error", out var err)) tcs.TrySetException(new InvalidOperationException($"CDP error: {err}"));
                        else tcs.TrySetResult(doc.GetProperty("result"));
                    }
                }
                else if (doc.TryGetProperty("method", out var m) && m.GetString() == "Runtime.exceptionThrown")
                {
                    var details = doc.GetProperty("params").GetProperty("exceptionDetails");
                    Exceptions.Enqueue(details.TryGetProperty("exception", out var ex) && ex.TryGetProperty("description", out var d) ? d.GetString()! : details.ToString());
                }
            }
        }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException or ObjectDisposedException) { }
        foreach (var tcs in _pending.Values) tcs.TrySetException(new InvalidOperationException("the DevTools connection closed"));
    }

    /// <summary>Evaluates <paramref name="expression"/> in the page (promises awaited) and returns its value as JSON.</summary>
    public async Task<JsonElement> EvalAsync(string expression)
    {
        var result = await SendAsync("Runtime.evaluate", new JsonObject
        {
            ["expression"] = expression, ["returnByValue"] = true, ["awaitPromise"] = true, ["userGesture"] = true,
        });
        if (result.TryGetProperty("exceptionDetails", out var ex)) throw new InvalidOperationException($"page script failed: {expression}\n{ex}");
        return result.GetProperty("result").TryGetProperty("value", out var v) ? v : default;
    }

    public async Task<string> TextAsync(string expression) => (await EvalAsync(expression)).GetString() ?? "";

    /// <summary>Polls <paramref name="condition"/> (a JavaScript boolean expression) until true; fails after <paramref name="seconds"/>.</summary>
    public async Task WaitForAsync(string condition, double seconds = 20, string? what = null)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var v = await EvalAsync($"!!({condition})");
            if (v.ValueKind == JsonValueKind.True) return;
            if (clock.Elapsed.TotalSeconds > seconds)
            {
                var body = await TextAsync("document.getElementById('messages')?.innerText ?? document.body.innerText");
                Assert.Fail($"timed out after {seconds} s waiting for {what ?? condition}; the conversation shows:\n{body}");
            }
            await Task.Delay(25);
        }
    }

    public async Task NavigateAsync(string url)
    {
        await SendAsync("Page.navigate", new JsonObject { ["url"] = url });
        await WaitForAsync($"location.href === {JsonValue.Create(url).ToJsonString()} && document.readyState === 'complete'", 20, $"{url} to load");
    }

    /// <summary>Focuses the element and replaces its value by typing <paramref name="text"/> (real input events).</summary>
    public async Task FillAsync(string selector, string text)
    {
        await EvalAsync($"(() => {{ const e = document.querySelector({Js(selector)}); e.focus(); if (e.type === 'number') e.value = ''; else e.select(); }})()");
        if (text.Length == 0) await PressAsync("Delete", "Delete", 46);
        else await SendAsync("Input.insertText", new JsonObject { ["text"] = text });
    }

    /// <summary>Types into the focused element without clearing it.</summary>
    public Task TypeAsync(string text) => SendAsync("Input.insertText", new JsonObject { ["text"] = text });

    /// <summary>A key press (down, up) on the focused element; <paramref name="modifiers"/>: 8 = Shift.</summary>
    public async Task PressAsync(string key, string code, int keyCode, int modifiers = 0, string? text = null)
    {
        var down = new JsonObject
        {
            ["type"] = text is null ? "rawKeyDown" : "keyDown", ["key"] = key, ["code"] = code, ["windowsVirtualKeyCode"] = keyCode,
            ["nativeVirtualKeyCode"] = keyCode, ["modifiers"] = modifiers,
        };
        if (text is not null) { down["text"] = text; down["unmodifiedText"] = text; }
        await SendAsync("Input.dispatchKeyEvent", down);
        await SendAsync("Input.dispatchKeyEvent", new JsonObject
        {
            ["type"] = "keyUp", ["key"] = key, ["code"] = code, ["windowsVirtualKeyCode"] = keyCode, ["nativeVirtualKeyCode"] = keyCode, ["modifiers"] = modifiers,
        });
    }

    public Task PressEnterAsync(bool shift = false) => PressAsync("Enter", "Enter", 13, shift ? 8 : 0, "\r");

    public Task ClickAsync(string selector) => EvalAsync($"document.querySelector({Js(selector)}).click()");

    /// <summary>Sets the files of an &lt;input type=file&gt; as a user's choice would (fires input and change).</summary>
    public async Task SetFilesAsync(string selector, params string[] paths)
    {
        var handle = await SendAsync("Runtime.evaluate", new JsonObject { ["expression"] = $"document.querySelector({Js(selector)})" });
        var objectId = handle.GetProperty("result").GetProperty("objectId").GetString();
        var files = new JsonArray();
        foreach (var p in paths) files.Add(Path.GetFullPath(p));
        await SendAsync("DOM.setFileInputFiles", new JsonObject { ["files"] = files, ["objectId"] = objectId });
    }

    /// <summary>prefers-color-scheme as the page sees it: "light" or "dark".</summary>
    public Task EmulateColorSchemeAsync(string scheme) => SendAsync("Emulation.setEmulatedMedia", new JsonObject
    {
        ["features"] = new JsonArray(new JsonObject { ["name"] = "prefers-color-scheme", ["value"] = scheme }),
    });

    public Task SetViewportAsync(int width, int height) => SendAsync("Emulation.setDeviceMetricsOverride", new JsonObject
    {
        ["width"] = width, ["height"] = height, ["deviceScaleFactor"] = 1, ["mobile"] = false,
    });

    public async Task<byte[]> ScreenshotAsync()
    {
        var r = await SendAsync("Page.captureScreenshot", new JsonObject { ["format"] = "png" });
        return Convert.FromBase64String(r.GetProperty("data").GetString()!);
    }

    /// <summary>A string as a JavaScript literal.</summary>
    public static string Js(string s) => JsonValue.Create(s).ToJsonString();

    public async ValueTask DisposeAsync()
    {
        try { await _ws.CloseAsync(WebSocketCloseStatus.NormalClosure, null, new CancellationTokenSource(2000).Token); }
        catch (Exception e) when (e is WebSocketException or OperationCanceledException) { }
        _ws.Dispose();
        await _receiver.WaitAsync(TimeSpan.FromSeconds(5)).ContinueWith(_ => { });
    }
}
