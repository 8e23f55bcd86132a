// After-hooks that close several things: every step runs even when an earlier
// one throws, so one broken resource never keeps the others (servers, pools,
// processes, temp dirs) open and the test file from exiting.
export async function closeAll(...steps: Array<(() => unknown) | undefined | null | false>): Promise<void> {
  const errors: unknown[] = [];
  for (const step of steps) {
    if (!step) continue;
    try {
      await step();
    } catch (err) {
      errors.push(err);
    }
  }
  if (errors.length === 1) throw errors[0];
  if (errors.length > 1) throw new AggregateError(errors, 'several clean-up steps failed');
}
