//! The guest of docs/guest-guide.md does what the guide says.

use hyperlight_async::{Error, ErrorCode, Sandbox, SandboxError};

#[tokio::test]
async fn the_guide_guest_works_as_documented() {
    let sandbox = Sandbox::builder(hyperlight_testing::guest_path("greeter"))
        .host_fn("host_add", |a: i32, b: i32| a + b)
        .build()
        .await
        .unwrap();
    assert_eq!(
        sandbox
            .call::<String>("greet", ("Ada".to_string(),))
            .await
            .unwrap(),
        "hello Ada"
    );
    assert_eq!(
        sandbox
            .call::<i32>("add_via_host", (40i32, 2i32))
            .await
            .unwrap(),
        42
    );
    assert_eq!(
        sandbox
            .call::<i64>("checked_div", (7i64, 2i64))
            .await
            .unwrap(),
        3
    );
    match sandbox
        .call::<i64>("checked_div", (1i64, 0i64))
        .await
        .unwrap_err()
    {
        Error::Sandbox(SandboxError::GuestCall { code, message }) => {
            assert_eq!(code, ErrorCode::GuestFunctionFailed);
            assert!(message.contains("division by zero"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}
