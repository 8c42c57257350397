import { PageMessage } from '../ui/states';

/** Where a completed checkout lands when the session has no successUrl. */
export default function CheckoutComplete() {
  return (
    <PageMessage title="Thank you!" tone="teal">
      Your subscription is active. You can close this page.
    </PageMessage>
  );
}
