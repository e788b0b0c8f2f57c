using Microsoft.AspNetCore.Http;

namespace Parrot.Cli.Serve.WebUi;

/// <summary>
/// The chat page at <c>GET /</c>: one self-contained HTML file (CSS and JavaScript inline, no CDN) embedded in
/// the assembly, talking to this server's own <c>/v1/chat/completions</c> with streaming.
/// </summary>
internal static class WebUiPage
{
    public const string ResourceName = "Parrot.Cli.Serve.WebUi.index.html";

    private static readonly Lazy<byte[]> Html = new(() =>
    {
        using var stream = typeof(WebUiPage).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"the web page resource {ResourceName} is missing from the assembly");
        using var ms = new MemoryStream();
        stream.CopyTo(ms);
        return ms.ToArray();
    });

    /// <summary>The page's bytes (UTF-8).</summary>
    public static byte[] Bytes => Html.Value;

    public static async Task Serve(HttpContext ctx)
    {
        var h = ctx.Response.Headers;
        ctx.Response.ContentType = "text/html; charset=utf-8";
        h.CacheControl = "no-cache";
        h.XContentTypeOptions = "nosniff";
        h["Referrer-Policy"] = "no-referrer";
        // Everything the page needs is inline or on this server; images are data: URLs.
        h.ContentSecurityPolicy = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
        await ctx.Response.Body.WriteAsync(Bytes, ctx.RequestAborted).ConfigureAwait(false);
    }
}
