using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Parrot.Tensors.Formats;
using Parrot.Tests.Shared;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.PixelFormats;

namespace Parrot.WebUi.Tests;

/// <summary>
/// The chat page of <c>parrot serve</c> end to end: Debian's headless Chromium (over the DevTools protocol) on the
/// page served by real <c>parrot serve</c> processes on loopback. Two servers: "main" with a Parrot made from
/// assets/tiny (answers that read like the demo world), and "endless" with a random tiny Parrot whose greedy
/// answers never end by themselves, one request at a time and no queue (--max-batch 1 --max-queue 0), for stop,
/// busy (429), oversized-image and server-gone cases. Skipped when no Chromium is installed.
/// </summary>
[NonParallelizable]
public class WebUiTests
{
    private const int Width = 1000, Height = 760;
    private const string English = "What color is the circle?";
    private const string Arabic = "ما لون المربع؟";

    private string _root = null!;
    private Chromium _browser = null!;
    private CdpPage _page = null!;
    private ServeProcess _main = null!, _endless = null!;
    private HttpClient _http = null!;
    private string _shapesPng = null!, _hugePng = null!;

    [OneTimeSetUp]
    public async Task Start()
    {
        var exe = Chromium.Find();
        if (exe is null)
            Assert.Ignore("the web UI tests need Chromium and none was found: install Debian's chromium (apt-get install chromium; .ci/run does) or set PARROT_CHROMIUM to a Chrome/Chromium executable");
        _root = TinyModels.TempDir("parrot-webui-tests");
        var browser = Chromium.LaunchAsync(exe, Width, Height);
        var endless = Task.Run(() => ServeProcess.StartAsync(WebUiModels.WriteEndlessParrot(Path.Combine(_root, "endless")), "--max-batch", "1", "--max-queue", "0"));
        var main = Task.Run(() => ServeProcess.StartAsync(WebUiModels.WriteAssetsParrot(Path.Combine(_root, "tiny-parrot")) ?? WebUiModels.WriteEndlessParrot(Path.Combine(_root, "tiny-parrot"))));
        try
        {
            _shapesPng = WriteShapes(Path.Combine(_root, "shapes.png"));
            _hugePng = WriteHuge(Path.Combine(_root, "huge.png"));
            await Task.WhenAll(browser, endless, main);
        }
        finally
        {
            // What did start is stopped by Stop() even when something else failed.
            if (browser.IsCompletedSuccessfully) _browser = browser.Result;
            if (endless.IsCompletedSuccessfully) _endless = endless.Result;
            if (main.IsCompletedSuccessfully) _main = main.Result;
        }
        _page = await _browser.NewPageAsync();
        await _page.SetViewportAsync(Width, Height);
        _http = new HttpClient { Timeout = TimeSpan.FromMinutes(2) };
    }

    [OneTimeTearDown]
    public async Task Stop()
    {
        _http?.Dispose();
        if (_page is not null) await _page.DisposeAsync();
        if (_browser is not null) await _browser.DisposeAsync();
        if (_main is not null) await _main.DisposeAsync();
        if (_endless is not null) await _endless.DisposeAsync();
        if (_root is not null) try { Directory.Delete(_root, recursive: true); } catch (IOException) { }
    }

    [TearDown]
    public void NoScriptErrors()
    {
        var errors = new List<string>();
        while (_page?.Exceptions.TryDequeue(out var e) == true) errors.Add(e);
        Assert.That(errors, Is.Empty, "uncaught JavaScript exceptions in the page");
    }

    // ---------------------------------------------------------------- the page itself

    [Test, Order(1)]
    public async Task GetRootServesOneSelfContainedPageWithSixExamplePrompts()
    {
        using var response = await _http.GetAsync(_main.Address);
        Assert.That((int)response.StatusCode, Is.EqualTo(200));
        Assert.That(response.Content.Headers.ContentType?.ToString(), Is.EqualTo("text/html; charset=utf-8"));
        Assert.That(response.Headers.GetValues("Content-Security-Policy").Single(), Does.Contain("default-src 'none'").And.Contain("connect-src 'self'"));
        var html = await response.Content.ReadAsStringAsync();
        if (WebUiModels.RepositoryRoot() is { } repo)
            Assert.That(html, Is.EqualTo(File.ReadAllText(Path.Combine(repo, "src", "Parrot.Cli", "Serve", "WebUi", "index.html"))), "the page is the embedded index.html");
        // Nothing is fetched from elsewhere: no external scripts, styles, fonts or images.
        Assert.That(Regex.IsMatch(html, @"(src|href)\s*=\s*[""']?\s*(https?:)?//|url\(\s*[""']?\s*(https?:)?//|@import", RegexOptions.IgnoreCase), Is.False, "an external reference");
        Assert.That(html, Does.Not.Contain("<script src").And.Not.Contain("<link"));

        await _page.NavigateAsync(_main.Address.ToString());
        await _page.WaitForAsync("document.getElementById('health').textContent === 'ready' && document.getElementById('model').textContent !== ''", what: "the health line to say ready");
        Assert.That(await _page.TextAsync("document.getElementById('model').textContent"), Is.EqualTo("model: tiny-parrot"));
        var examples = await _page.EvalAsync("[...document.querySelectorAll('#examples button')].map(b => ({ lang: b.lang, dir: getComputedStyle(b).direction, text: b.textContent }))");
        Assert.That(examples.EnumerateArray().Select(e => e.GetProperty("lang").GetString()), Is.EqualTo(new[] { "en", "zh", "pt", "ar", "tr", "ru" }));
        foreach (var e in examples.EnumerateArray())
            Assert.That(e.GetProperty("dir").GetString(), Is.EqualTo(e.GetProperty("lang").GetString() == "ar" ? "rtl" : "ltr"), e.GetProperty("text").GetString());
        // Every control has a name a screen reader can read (a label, aria-label or its own text).
        var unnamed = await _page.EvalAsync(
            "[...document.querySelectorAll('button, textarea, input:not([type=file])')].filter(e => !(e.labels?.length || e.getAttribute('aria-label') || e.textContent.trim())).map(e => e.id)");
        Assert.That(unnamed.GetArrayLength(), Is.EqualTo(0), unnamed.ToString());
        // The welcome screen with the examples, for a look (test output only).
        File.WriteAllBytes(Path.Combine(TestContext.CurrentContext.WorkDirectory, "webui-welcome.png"), await _page.ScreenshotAsync());
    }

    [Test, Order(2)]
    public async Task ShiftEnterStartsANewLineAndEnterSendsWithTheSettings()
    {
        await _page.NavigateAsync(_main.Address.ToString());
        await SettingsAsync(temperature: 0, maxTokens: 8, topP: 0.5);
        // The test watches what the page posts (the page's own fetch, wrapped).
        await _page.EvalAsync("window.__posted = []; const f = window.fetch; window.fetch = (u, o) => { if (o?.body) __posted.push(o.body); return f(u, o); }");
        await _page.EvalAsync("document.getElementById('prompt').focus()");
        await _page.TypeAsync("first line");
        await _page.PressEnterAsync(shift: true);
        await _page.TypeAsync("second line");
        Assert.That(await _page.TextAsync("document.getElementById('prompt').value"), Is.EqualTo("first line\nsecond line"));
        Assert.That((await _page.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32(), Is.EqualTo(0), "Shift+Enter sent nothing");
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 1);
        Assert.That(await _page.TextAsync("document.querySelector('.msg.user .text').textContent"), Is.EqualTo("first line\nsecond line"));
        Assert.That(await _page.TextAsync("document.getElementById('prompt').value"), Is.Empty);
        var posted = JsonDocument.Parse(await _page.TextAsync("__posted.length === 1 ? __posted[0] : ''")).RootElement;
        Assert.That(posted.GetProperty("stream").GetBoolean(), Is.True);
        Assert.That(posted.GetProperty("temperature").GetDouble(), Is.EqualTo(0));
        Assert.That(posted.GetProperty("top_p").GetDouble(), Is.EqualTo(0.5));
        Assert.That(posted.GetProperty("max_tokens").GetInt32(), Is.EqualTo(8));
        Assert.That(posted.GetProperty("messages").ToString(), Is.EqualTo("""[{"role":"user","content":"first line\nsecond line"}]"""));
    }

    // ---------------------------------------------------------------- answers

    [Test, Order(3)]
    public async Task AnImageThenEnglishThenArabicStreamTheServersGreedyAnswers()
    {
        await OpenAsync(_main, temperature: 0, maxTokens: 40);
        await _page.SetFilesAsync("#file", _shapesPng);
        await _page.WaitForAsync("!document.getElementById('attachment').hidden && document.getElementById('thumb').naturalWidth === 96", what: "the thumbnail");
        string dataUrl = "data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes(_shapesPng));
        Assert.That(await _page.TextAsync("document.getElementById('thumb').src"), Is.EqualTo(dataUrl));

        await _page.FillAsync("#prompt", English);
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 1);
        var messages = new JsonArray(UserWithImage(English, dataUrl));
        string first = await AnswerAsync(0);
        Assert.That(first, Is.Not.Empty);
        Assert.That(first, Is.EqualTo(await ReferenceAsync(_main, messages, 40)), "streamed in the page = the server's non-streaming greedy answer");

        await _page.FillAsync("#prompt", Arabic);
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 2);
        messages.Add(new JsonObject { ["role"] = "assistant", ["content"] = first });
        messages.Add(new JsonObject { ["role"] = "user", ["content"] = Arabic });
        string second = await AnswerAsync(1);
        Assert.That(second, Is.EqualTo(await ReferenceAsync(_main, messages, 40)), "the second turn carries the whole conversation");

        var users = await _page.EvalAsync("[...document.querySelectorAll('.msg.user')].map(b => ({ dir: getComputedStyle(b.querySelector('.text')).direction, img: !!b.querySelector('img') }))");
        Assert.That(users[0].GetProperty("dir").GetString(), Is.EqualTo("ltr"));
        Assert.That(users[0].GetProperty("img").GetBoolean(), Is.True, "the image is shown in its message");
        Assert.That(users[1].GetProperty("dir").GetString(), Is.EqualTo("rtl"), "the Arabic question's bubble is right to left");
        Assert.That(await _page.TextAsync("getComputedStyle(document.querySelectorAll('.msg.assistant .text')[1]).direction"), Is.EqualTo(FirstStrongDirection(second)),
            "the answer's bubble follows its text");

        await ScreenshotsAsync();
    }

    [Test, Order(4)]
    public async Task AnExamplePromptAsksInOneClickWithTheSamplePicture()
    {
        await OpenAsync(_main, temperature: 0, maxTokens: 24);
        await _page.ClickAsync("#examples button[lang=ar]");
        await WaitIdleAsync(assistants: 1);
        Assert.That(await _page.TextAsync("document.querySelector('.msg.user .text').textContent"), Is.EqualTo(Arabic));
        Assert.That(await _page.TextAsync("getComputedStyle(document.querySelector('.msg.user .text')).direction"), Is.EqualTo("rtl"));
        string sample = await _page.TextAsync("document.querySelector('.msg.user img').src");
        Assert.That(sample, Does.StartWith("data:image/png;base64,"));
        Assert.That(await AnswerAsync(0), Is.EqualTo(await ReferenceAsync(_main, new JsonArray(UserWithImage(Arabic, sample)), 24)));
    }

    [Test, Order(5)]
    public async Task ADroppedOrPastedImageIsAttachedWithItsThumbnail()
    {
        await OpenAsync(_main, temperature: 0, maxTokens: 4);
        // A real drop of a file from outside the browser, on the conversation area.
        foreach (var type in new[] { "dragEnter", "dragOver", "drop" })
            await _page.SendAsync("Input.dispatchDragEvent", new JsonObject
            {
                ["type"] = type, ["x"] = Width / 2, ["y"] = Height / 2, ["modifiers"] = 0,
                ["data"] = new JsonObject { ["items"] = new JsonArray(), ["files"] = new JsonArray(Path.GetFullPath(_shapesPng)), ["dragOperationsMask"] = 1 },
            });
        await _page.WaitForAsync("!document.getElementById('attachment').hidden && document.getElementById('thumb').naturalWidth === 96", what: "the dropped image's thumbnail");
        Assert.That(await _page.TextAsync("document.getElementById('attachment-name').textContent"), Is.EqualTo("shapes.png"));
        Assert.That(await _page.TextAsync("document.getElementById('thumb').src"), Is.EqualTo("data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes(_shapesPng))));
        await _page.ClickAsync("#remove-image");

        // A paste event carrying an image file (as a screenshot tool's clipboard does) into the message box.
        string b64 = Convert.ToBase64String(File.ReadAllBytes(_shapesPng));
        await _page.EvalAsync($$"""
            (() => {
              const bytes = Uint8Array.from(atob("{{b64}}"), c => c.charCodeAt(0));
              const dt = new DataTransfer();
              dt.items.add(new File([bytes], "image.png", { type: "image/png" }));
              document.getElementById('prompt').dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
            })()
            """);
        await _page.WaitForAsync("!document.getElementById('attachment').hidden && document.getElementById('thumb').naturalWidth === 96", what: "the pasted image's thumbnail");
        Assert.That(await _page.TextAsync("document.getElementById('thumb').src"), Is.EqualTo("data:image/png;base64," + b64));
        Assert.That(await _page.TextAsync("document.getElementById('prompt').value"), Is.Empty, "the paste put no text in the box");
    }

    // ---------------------------------------------------------------- stop, busy, errors

    [Test, Order(6)]
    public async Task StopEndsTheAnswerMidwayAndTheServerCancelsItsGeneration()
    {
        await OpenAsync(_endless, temperature: 0, maxTokens: 100_000);
        long cancelled = await MetricAsync(_endless, "parrot_requests_cancelled_total");
        await _page.FillAsync("#prompt", "Tell me a very long story.");
        await _page.PressEnterAsync();
        await _page.WaitForAsync("document.querySelector('.msg.assistant.streaming .text')?.textContent.length >= 40 && !document.getElementById('stop').hidden",
            what: "the answer to stream in");
        await _page.ClickAsync("#stop");
        await WaitIdleAsync(assistants: 1);
        Assert.That(await _page.TextAsync("document.querySelector('.msg.assistant .note').textContent"), Is.EqualTo("Stopped."));
        Assert.That((await _page.EvalAsync("document.querySelectorAll('.msg.error').length")).GetInt32(), Is.EqualTo(0), "a stop is not an error");

        // The server noticed the closed connection and took the sequence out of the batch.
        var clock = Stopwatch.StartNew();
        while (await MetricAsync(_endless, "parrot_requests_cancelled_total") != cancelled + 1 || await MetricAsync(_endless, "parrot_batch_size") != 0)
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)), "the server did not cancel the stopped generation");
            await Task.Delay(50);
        }
        long generated = await MetricAsync(_endless, "parrot_generated_tokens_total");
        await Task.Delay(300);
        Assert.That(await MetricAsync(_endless, "parrot_generated_tokens_total"), Is.EqualTo(generated), "no more tokens are generated");

        // The page goes on: the next answer (this model never ends by itself) stops at max tokens and says so.
        await SettingsAsync(0, 5);
        await _page.FillAsync("#prompt", "Shorter, please.");
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 2);
        Assert.That(await _page.TextAsync("document.querySelectorAll('.msg.assistant')[1].querySelector('.note').textContent"), Is.EqualTo("Stopped at the max-tokens limit."));

        // New chat in the middle of an answer stops it and forgets everything: the next question is asked alone.
        await SettingsAsync(0, 100_000);
        await _page.FillAsync("#prompt", "Another long one.");
        await _page.PressEnterAsync();
        await _page.WaitForAsync("document.querySelector('.msg.assistant.streaming .text')?.textContent.length >= 10", what: "the third answer to stream in");
        await _page.ClickAsync("#new-chat");
        await _page.WaitForAsync("document.getElementById('stop').hidden", what: "the request to end");
        Assert.That((await _page.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32(), Is.EqualTo(0));
        await WaitForMetricAsync(_endless, "parrot_batch_size", 0);
        await SettingsAsync(0, 6);
        await _page.FillAsync("#prompt", "Fresh start.");
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 1);
        Assert.That(await AnswerAsync(0), Is.EqualTo(await ReferenceAsync(_endless, new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Fresh start." }), 6)));
    }

    [Test, Order(7)]
    public async Task ABusyServerIsShownAs429AndTheQuestionCanBeSentAgain()
    {
        await OpenAsync(_endless, temperature: 0, maxTokens: 6);
        // Another client holds the server's only place (--max-batch 1, --max-queue 0).
        var hold = new HttpRequestMessage(HttpMethod.Post, new Uri(_endless.Address, "v1/chat/completions"))
        {
            Content = Json(new JsonObject { ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hold" }), ["max_tokens"] = 150_000, ["temperature"] = 0, ["stream"] = true }),
        };
        var holding = await _http.SendAsync(hold, HttpCompletionOption.ResponseHeadersRead);
        try
        {
            Assert.That((int)holding.StatusCode, Is.EqualTo(200));
            await _page.FillAsync("#prompt", "Are you there?");
            await _page.PressEnterAsync();
            await WaitIdleAsync(errors: 1);
            string error = await _page.TextAsync("document.querySelector('.msg.error').textContent");
            Assert.That(error, Does.StartWith("Server busy (HTTP 429)").And.Contain("the request queue is full").And.Contain("Try again in 1 s"));
            Assert.That(await _page.TextAsync("document.querySelector('.msg.error').getAttribute('role')"), Is.EqualTo("alert"));
            Assert.That(await _page.TextAsync("document.getElementById('prompt').value"), Is.EqualTo("Are you there?"), "the question is back in the box");
        }
        finally { holding.Dispose(); }

        await WaitForMetricAsync(_endless, "parrot_batch_size", 0);
        await _page.EvalAsync("document.getElementById('prompt').focus()");
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 1, errors: 1);
        Assert.That(await AnswerAsync(0), Is.EqualTo(await ReferenceAsync(_endless, new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Are you there?" }), 6)),
            "the refused question left no trace in the history");
    }

    [Test, Order(8)]
    public async Task AnOversizedImageShowsTheServersErrorAndThePageStaysUsable()
    {
        await OpenAsync(_endless, temperature: 0, maxTokens: 4);
        await _page.SetFilesAsync("#file", _hugePng);
        await _page.WaitForAsync("!document.getElementById('attachment').hidden", what: "the attachment");
        await _page.FillAsync("#prompt", "What is in this picture?");
        await _page.PressEnterAsync();
        await WaitIdleAsync(errors: 1);

        var request = Request(new JsonArray(UserWithImage("What is in this picture?", "data:image/png;base64," + Convert.ToBase64String(File.ReadAllBytes(_hugePng)))), 4);
        using var direct = await _http.PostAsync(new Uri(_endless.Address, "v1/chat/completions"), Json(request));
        Assert.That((int)direct.StatusCode, Is.EqualTo(400));
        var error = JsonDocument.Parse(await direct.Content.ReadAsStringAsync()).RootElement.GetProperty("error");
        Assert.That(error.GetProperty("code").GetString(), Is.EqualTo("image_too_large"));
        Assert.That(await _page.TextAsync("document.querySelector('.msg.error').textContent"), Is.EqualTo("Error 400: " + error.GetProperty("message").GetString()));
        foreach (var scheme in new[] { "dark", "light" })
        {
            await _page.EmulateColorSchemeAsync(scheme);
            await AssertContrastAsync(scheme, ".msg.error .text");
        }

        // The image comes back to the composer; without it the question is answered.
        Assert.That((await _page.EvalAsync("document.getElementById('attachment').hidden")).GetBoolean(), Is.False);
        await _page.ClickAsync("#remove-image");
        Assert.That((await _page.EvalAsync("document.getElementById('attachment').hidden")).GetBoolean(), Is.True);
        await _page.PressEnterAsync();
        await WaitIdleAsync(assistants: 1, errors: 1);

        await _page.ClickAsync("#new-chat");
        Assert.That((await _page.EvalAsync("document.querySelectorAll('.msg').length")).GetInt32(), Is.EqualTo(0));
        Assert.That((await _page.EvalAsync("document.getElementById('welcome').hidden")).GetBoolean(), Is.False);
    }

    [Test, Order(9)]
    public async Task AServerThatIsGoneIsShown()
    {
        await OpenAsync(_endless, temperature: 0, maxTokens: 4);
        await _endless.KillAsync();
        await _page.FillAsync("#prompt", "Hello?");
        await _page.PressEnterAsync();
        await WaitIdleAsync(errors: 1);
        Assert.That(await _page.TextAsync("document.querySelector('.msg.error').textContent"), Does.StartWith("Cannot reach the server"));
        Assert.That((await _page.EvalAsync("document.getElementById('send').hidden")).GetBoolean(), Is.False, "the page can send again");
    }

    // ---------------------------------------------------------------- helpers

    /// <summary>Loads the page of <paramref name="server"/> afresh and sets the sampling settings.</summary>
    private async Task OpenAsync(ServeProcess server, double temperature, int maxTokens)
    {
        await _page.NavigateAsync(server.Address.ToString());
        await SettingsAsync(temperature, maxTokens);
    }

    private async Task SettingsAsync(double temperature, int maxTokens, double topP = 0.95)
    {
        if ((await _page.EvalAsync("document.getElementById('settings').hidden")).GetBoolean()) await _page.ClickAsync("#settings-toggle");
        await _page.FillAsync("#temperature", temperature.ToString(CultureInfo.InvariantCulture));
        await _page.FillAsync("#top-p", topP.ToString(CultureInfo.InvariantCulture));
        await _page.FillAsync("#max-tokens", maxTokens.ToString(CultureInfo.InvariantCulture));
        await _page.ClickAsync("#settings-toggle");
        Assert.That((await _page.EvalAsync("document.getElementById('settings').hidden")).GetBoolean(), Is.True);
    }

    /// <summary>Waits until no request runs and the conversation has the given numbers of answers and errors.</summary>
    private Task WaitIdleAsync(int assistants = 0, int errors = 0) => _page.WaitForAsync(
        $"document.getElementById('stop').hidden && !document.querySelector('.msg.streaming') && document.querySelectorAll('.msg.assistant').length === {assistants} && document.querySelectorAll('.msg.error').length === {errors}",
        30, $"{assistants} answer(s) and {errors} error(s)");

    private Task<string> AnswerAsync(int i) => _page.TextAsync($"document.querySelectorAll('.msg.assistant .text')[{i}].textContent");

    private static JsonObject UserWithImage(string text, string dataUrl) => new()
    {
        ["role"] = "user",
        ["content"] = new JsonArray(
            new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = dataUrl } },
            new JsonObject { ["type"] = "text", ["text"] = text }),
    };

    private static JsonObject Request(JsonArray messages, int maxTokens) => new()
    {
        ["model"] = "tiny-parrot", ["messages"] = messages, ["temperature"] = 0, ["top_p"] = 0.95, ["max_tokens"] = maxTokens,
    };

    private static StringContent Json(JsonNode body) => new(body.ToJsonString(), Encoding.UTF8, "application/json");

    /// <summary>The server's non-streaming answer to the same conversation (greedy).</summary>
    private async Task<string> ReferenceAsync(ServeProcess server, JsonArray messages, int maxTokens)
    {
        using var response = await _http.PostAsync(new Uri(server.Address, "v1/chat/completions"), Json(Request((JsonArray)messages.DeepClone(), maxTokens)));
        var body = await response.Content.ReadAsStringAsync();
        Assert.That((int)response.StatusCode, Is.EqualTo(200), body);
        return JsonDocument.Parse(body).RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString()!;
    }

    private async Task<long> MetricAsync(ServeProcess server, string name)
    {
        var text = await _http.GetStringAsync(new Uri(server.Address, "metrics"));
        var m = Regex.Match(text, $@"^{name} (\d+)", RegexOptions.Multiline);
        Assert.That(m.Success, Is.True, $"{name} in /metrics");
        return long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private async Task WaitForMetricAsync(ServeProcess server, string name, long value)
    {
        var clock = Stopwatch.StartNew();
        while (await MetricAsync(server, name) != value)
        {
            Assert.That(clock.Elapsed, Is.LessThan(TimeSpan.FromSeconds(15)), $"{name} did not reach {value}");
            await Task.Delay(50);
        }
    }

    /// <summary>The direction of the first strong character (Unicode's rule P2, for the scripts we use).</summary>
    private static string FirstStrongDirection(string text)
    {
        foreach (var rune in text.EnumerateRunes())
        {
            if (rune.Value is >= 0x0590 and <= 0x08FF or >= 0xFB1D and <= 0xFDFF or >= 0xFE70 and <= 0xFEFF) return "rtl";
            if (Rune.IsLetter(rune)) return "ltr";
        }
        return "ltr";
    }

    /// <summary>Light and dark screenshots of the conversation, for the README (docs/webui-*.png).</summary>
    private async Task ScreenshotsAsync()
    {
        var outDir = WebUiModels.RepositoryRoot() is { } repo ? Path.Combine(repo, "docs") : TestContext.CurrentContext.WorkDirectory;
        await _page.EvalAsync("document.activeElement?.blur()"); // no blinking caret: the same page gives the same file
        var backgrounds = new Dictionary<string, string>();
        foreach (var scheme in new[] { "light", "dark" })
        {
            await _page.EmulateColorSchemeAsync(scheme);
            backgrounds[scheme] = await _page.TextAsync("getComputedStyle(document.body).backgroundColor");
            await AssertContrastAsync(scheme, "h1", "#model", "#health", "#new-chat", "#attach", "#send", ".hint-line",
                ".msg.user .text", ".msg.assistant .text", ".msg.assistant + .msg.user .text");
            var png = await _page.ScreenshotAsync();
            using (var image = Image.Load<Rgb24>(png)) Assert.That((image.Width, image.Height), Is.EqualTo((Width, Height)));
            AtomicFile.WriteAllBytes(Path.Combine(outDir, $"webui-{scheme}.png"), png);
        }
        await _page.EmulateColorSchemeAsync("light");
        Assert.That(backgrounds["light"], Is.EqualTo("rgb(255, 255, 255)"));
        Assert.That(backgrounds["dark"], Is.EqualTo("rgb(21, 24, 28)"), "prefers-color-scheme: dark switches the theme");
    }

    /// <summary>
    /// WCAG 2 contrast of each element's text colour against the first opaque background behind it: at least
    /// 4.5:1 (AA for normal text), computed here from the colours the browser resolved.
    /// </summary>
    private async Task AssertContrastAsync(string scheme, params string[] selectors)
    {
        var pairs = await _page.EvalAsync($$"""
            {{JsonSerializer.Serialize(selectors)}}.map(sel => {
              const e = document.querySelector(sel);
              if (!e) return [sel, null, null];
              let b = e, bg = 'rgba(0, 0, 0, 0)';
              while (b && (bg = getComputedStyle(b).backgroundColor).startsWith('rgba') && bg.endsWith(', 0)')) b = b.parentElement;
              return [sel, getComputedStyle(e).color, bg];
            })
            """);
        foreach (var p in pairs.EnumerateArray())
        {
            string sel = p[0].GetString()!;
            Assert.That(p[1].ValueKind, Is.EqualTo(JsonValueKind.String), $"{sel} is on the page");
            double ratio = Contrast(Rgb(p[1].GetString()!), Rgb(p[2].GetString()!));
            Assert.That(ratio, Is.GreaterThanOrEqualTo(4.5), $"{scheme}: contrast of {sel} ({p[1]} on {p[2]})");
        }
    }

    private static double[] Rgb(string css)
    {
        var m = Regex.Match(css, @"rgba?\((\d+), (\d+), (\d+)(, ([\d.]+))?\)");
        Assert.That(m.Success, Is.True, css);
        Assert.That(m.Groups[5].Success ? double.Parse(m.Groups[5].Value, CultureInfo.InvariantCulture) : 1.0, Is.EqualTo(1.0), $"{css} is opaque");
        return [.. Enumerable.Range(1, 3).Select(i => double.Parse(m.Groups[i].Value, CultureInfo.InvariantCulture) / 255)];
    }

    private static double Contrast(double[] a, double[] b)
    {
        static double Luminance(double[] c)
        {
            static double Linear(double v) => v <= 0.04045 ? v / 12.92 : Math.Pow((v + 0.055) / 1.055, 2.4);
            return 0.2126 * Linear(c[0]) + 0.7152 * Linear(c[1]) + 0.0722 * Linear(c[2]);
        }
        double la = Luminance(a), lb = Luminance(b);
        return (Math.Max(la, lb) + 0.05) / (Math.Min(la, lb) + 0.05);
    }

    /// <summary>A picture like the demo world's (96 px, the tower's size): a red circle, a blue square and a green triangle on white.</summary>
    private static string WriteShapes(string path)
    {
        using var img = new Image<Rgb24>(96, 96);
        for (int y = 0; y < 96; y++)
            for (int x = 0; x < 96; x++)
            {
                var c = new Rgb24(255, 255, 255);
                if ((x - 20) * (x - 20) + (y - 48) * (y - 48) <= 144) c = new Rgb24(224, 32, 32);
                else if (x >= 64 && x < 88 && y >= 36 && y < 60) c = new Rgb24(32, 80, 224);
                else if (y >= 6 && y < 30 && Math.Abs(x - 48) <= (y - 6) * 14 / 24) c = new Rgb24(32, 160, 64);
                img[x, y] = c;
            }
        img.SaveAsPng(path);
        return path;
    }

    /// <summary>A PNG over the server's 16M-pixel limit (4,100 × 4,100, one grey; a few kB compressed).</summary>
    private static string WriteHuge(string path)
    {
        using var img = new Image<L8>(4100, 4100, new L8(128));
        img.SaveAsPng(path);
        return path;
    }
}
