/**
 * One HTTP request from the CLI to the running weft (status endpoint or router API). A weft
 * that cannot be reached becomes an error naming `where` and the cause, and asking whether weft
 * runs; answers, good or bad, are the caller's to read.
 */
export async function fetchFromWeft(
  url: string,
  where: string,
  init: RequestInit = {},
): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    throw new Error(`cannot reach ${where} (${cause}): is weft running?`);
  }
}
